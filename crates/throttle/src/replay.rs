//! Replaying a timeline of triggers through a [`Schedule`] on virtual time.

use std::time::Duration;

use crate::schedule::{Run, Schedule};
use crate::time::Instant;

/// One run of `f` in a replayed timeline: it started at `start` and ended at
/// `end`.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub struct Span {
    /// When the run started.
    pub start: Instant,
    /// When the run ended (`start` plus the run's duration).
    pub end: Instant,
}

/// Plays `triggers` through `schedule` with a punctual driver on virtual
/// time and returns the runs of `f`, in order.
///
/// The driver starts every run exactly when it becomes due, and each run
/// takes `run_time(run)`. The triggers may come in any order (they are
/// events at instants, so they are sorted first). Events at one instant are
/// applied in a fixed order: first the triggers, then the end of a run that
/// ends then, then the start of a run that is due then. Hence a run that
/// starts at `t` serves every trigger at or before `t`, and a trigger at the
/// instant a run ends counts as arriving during that run (which, in both
/// modes, gives the same result as arriving just after it).
///
/// This is what the timeline tests, the documentation's diagrams and a
/// simulator use; a real driver behaves the same, except that which of a
/// trigger and a due run comes first at one instant is then a race.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use reclaim_throttle::{replay, Instant, Schedule};
///
/// let ms = Instant::from_millis;
/// // BuildKit's TestAfter, on virtual time: d = 100 ms, two triggers 10 ms
/// // apart, runs that take 1 ms.
/// let runs = replay(
///     Schedule::after(Duration::from_millis(100)),
///     &[ms(0), ms(10)],
///     |_| Duration::from_millis(1),
/// );
/// let starts: Vec<Instant> = runs.iter().map(|span| span.start).collect();
/// assert_eq!(starts, [ms(0), ms(101)]);
/// ```
pub fn replay(
    mut schedule: Schedule,
    triggers: &[Instant],
    mut run_time: impl FnMut(&Run) -> Duration,
) -> Vec<Span> {
    let mut triggers = triggers.to_vec();
    triggers.sort_unstable();
    let mut next_trigger = 0;
    let mut in_progress: Option<(Run, Instant)> = None;
    let mut spans = Vec::new();
    loop {
        // The next instant at which anything happens.
        let candidates = [
            triggers.get(next_trigger).copied(),
            in_progress.as_ref().map(|(_, end)| *end),
            schedule.poll_timeout(),
        ];
        let Some(now) = candidates.into_iter().flatten().min() else {
            return spans;
        };
        while let Some(&at) = triggers.get(next_trigger) {
            if at > now {
                break;
            }
            schedule.trigger(at);
            next_trigger += 1;
        }
        // A zero-length run ends at the instant it starts, and with `d = 0`
        // the next one can start at that instant too, so settle the instant.
        loop {
            if let Some((run, end)) = in_progress.take_if(|(_, end)| *end <= now) {
                spans.push(Span {
                    start: run.started(),
                    end,
                });
                schedule
                    .finish(run, end)
                    .expect("the replay hands back the run its schedule started");
            }
            if in_progress.is_some() {
                break;
            }
            let Some(run) = schedule.poll(now) else {
                break;
            };
            let end = now + run_time(&run);
            in_progress = Some((run, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_triggers_no_runs() {
        let runs = replay(Schedule::after(Duration::from_secs(1)), &[], |_| {
            Duration::ZERO
        });
        assert!(runs.is_empty());
    }

    #[test]
    fn unsorted_triggers_are_sorted() {
        let ms = Instant::from_millis;
        let d = Duration::from_millis(10);
        let sorted = replay(Schedule::after(d), &[ms(0), ms(5), ms(40)], |_| d);
        let shuffled = replay(Schedule::after(d), &[ms(40), ms(0), ms(5)], |_| d);
        assert_eq!(sorted, shuffled);
        assert_eq!(sorted.len(), 3);
    }
}
