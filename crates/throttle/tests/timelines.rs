//! Timelines written as data (`tests/data/timelines.txt`), replayed through
//! the schedule on virtual time.

use std::time::Duration;

use reclaim_throttle::{Instant, Mode, Schedule, replay};

/// One timeline from the data file.
#[derive(Debug)]
struct Case {
    name: String,
    mode: Mode,
    period: u64,
    triggers: Vec<u64>,
    runs: Vec<u64>,
    starts: Vec<u64>,
}

fn numbers(field: &str, text: &str) -> Vec<u64> {
    text.split_whitespace()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{field}: not a number: {n:?}"))
        })
        .collect()
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<(&str, &str)> = block
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let (key, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("no key in {line:?}"));
                (key.trim(), value.trim())
            })
            .collect();
        if lines.is_empty() {
            continue;
        }
        let field = |key: &str| {
            lines
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("missing {key:?} in {lines:?}"))
        };
        let (mode, period) = field("mode")
            .split_once(' ')
            .expect("mode: <after|throttle> <d>");
        cases.push(Case {
            name: field("case").to_owned(),
            mode: match mode {
                "after" => Mode::After,
                "throttle" => Mode::Throttle,
                other => panic!("mode: unknown mode {other:?}"),
            },
            period: period.trim().parse().expect("mode: period in ms"),
            triggers: numbers("triggers", field("triggers")),
            runs: numbers("runs", field("runs")),
            starts: numbers("starts", field("starts")),
        });
    }
    cases
}

fn play(case: &Case) -> Vec<u64> {
    let triggers: Vec<Instant> = case
        .triggers
        .iter()
        .map(|t| Instant::from_millis(*t))
        .collect();
    let schedule = Schedule::new(case.mode, Duration::from_millis(case.period));
    let last = case.runs.len() - 1;
    let spans = replay(schedule, &triggers, |run| {
        let index = usize::try_from(run.seq() - 1).unwrap().min(last);
        Duration::from_millis(case.runs[index])
    });
    // The run spans themselves must respect the period and never overlap.
    for pair in spans.windows(2) {
        let gap = pair[1].start.saturating_duration_since(pair[0].end);
        assert!(
            pair[1].start >= pair[0].end && gap >= Duration::from_millis(case.period),
            "{}: runs {pair:?} closer than d",
            case.name
        );
    }
    spans.iter().map(|span| span.start.as_millis()).collect()
}

#[test]
fn timelines_match_upstream() {
    let cases = parse(include_str!("data/timelines.txt"));
    assert!(cases.len() >= 20, "only {} cases parsed", cases.len());
    assert!(
        cases.iter().any(|c| c.mode == Mode::After)
            && cases.iter().any(|c| c.mode == Mode::Throttle)
    );
    let mut failures = Vec::new();
    for case in &cases {
        let got = play(case);
        if got != case.starts {
            failures.push(format!(
                "{}\n  expected starts {:?}\n  got             {:?}",
                case.name, case.starts, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} timeline(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn permuting_triggers_changes_nothing() {
    for case in parse(include_str!("data/timelines.txt")) {
        let mut reversed = case.triggers.clone();
        reversed.reverse();
        let flipped = Case {
            triggers: reversed,
            name: case.name.clone(),
            runs: case.runs.clone(),
            starts: Vec::new(),
            ..case
        };
        assert_eq!(play(&flipped), case.starts, "{}", case.name);
    }
}

/// Renders the timing diagram of `docs/throttle.md`: one column per 10 ms,
/// `T` where a trigger happens, `#` while `f` runs.
fn diagram() -> String {
    const UNIT: u64 = 10;
    const COLUMNS: u64 = 32;
    let triggers = [0, 20, 100, 150, 170];
    let instants: Vec<Instant> = triggers.iter().map(|t| Instant::from_millis(*t)).collect();
    let period = Duration::from_millis(50);
    let run = Duration::from_millis(20);
    let mut out = String::from("ms         ");
    for column in (0..COLUMNS).step_by(5) {
        out.push_str(&format!("{:<5}", column * UNIT));
    }
    let mut lines = vec![out.trim_end().to_owned()];
    let row = |label: &str, mark: &dyn Fn(u64) -> bool| {
        let cells: String = (0..COLUMNS)
            .map(|c| if mark(c * UNIT) { '#' } else { '.' })
            .collect();
        format!("{label:<11}{cells}")
    };
    lines.push(
        row("trigger", &|at| {
            triggers.iter().any(|t| (at..at + UNIT).contains(t))
        })
        .replace('#', "T"),
    );
    for (label, schedule) in [
        ("After", Schedule::after(period)),
        ("Throttle", Schedule::throttle(period)),
    ] {
        let spans = replay(schedule, &instants, |_| run);
        lines.push(row(label, &|at| {
            let at = Instant::from_millis(at);
            spans.iter().any(|span| span.start <= at && at < span.end)
        }));
    }
    lines.join("\n")
}

#[test]
fn documented_diagram_matches_the_schedule() {
    let doc = include_str!("../../../docs/throttle.md");
    let start = doc
        .find("<!-- diagram:start -->\n```text\n")
        .expect("diagram start marker");
    let body = &doc[start..];
    let body = &body[body.find("```text\n").unwrap() + 8..];
    let documented = &body[..body.find("\n```").expect("diagram end")];
    let rendered = diagram();
    assert_eq!(
        documented, rendered,
        "docs/throttle.md is stale; the diagram should read:\n{rendered}"
    );
}
