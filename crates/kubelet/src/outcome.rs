//! Outcomes of runtime calls, shared by the container and image collectors.

use std::fmt;

use serde::Serialize;

/// A runtime call that failed, as reported by whoever drives a collector.
///
/// The message is kept verbatim: the kubelet embeds runtime error texts in
/// its own messages (for example the image GC's aggregated deletion
/// errors).
#[derive(Clone, Debug, Eq, PartialEq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// The runtime's error text.
    pub message: String,
}

impl CallError {
    /// A call error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// What happened to one planned removal.
///
/// A dry run ([`crate::plan_containers`], [`crate::plan_images`]) marks
/// every call it would make as [`CallStatus::Succeeded`], because that is
/// the assumption it plans under. Error texts of failed calls are in the
/// plan's `failures`.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallStatus {
    /// The removal call failed. For containers the kubelet still counts the
    /// container as removed; for images the record stays.
    Failed,
    /// The collector stopped (or was finished early) before this call.
    #[default]
    NotAttempted,
    /// The stop that must precede the removal failed (an unknown-state
    /// container's kill, or a sandbox's `StopPodSandbox`), so the removal
    /// call was never made.
    StopFailed,
    /// The call succeeded (or, in a dry run, is assumed to).
    Succeeded,
}

impl CallStatus {
    /// True for [`CallStatus::Succeeded`].
    pub const fn succeeded(self) -> bool {
        matches!(self, Self::Succeeded)
    }

    /// True when a removal call was issued, whether or not it succeeded.
    pub const fn remove_called(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }

    /// A short lowercase name for tables.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::NotAttempted => "not attempted",
            Self::StopFailed => "stop failed",
            Self::Succeeded => "ok",
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runtime call that failed, with the runtime's message.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
pub struct CallFailure {
    /// The call: `KillContainer`, `RemoveContainer`, `StopPodSandbox`,
    /// `RemovePodSandbox`, `RemovePodLogDir` or `RemoveImage`.
    pub call: &'static str,
    /// The container, sandbox or image id, or the pod log directory name.
    pub target: String,
    /// The runtime's error text.
    pub message: String,
}

/// Go's `errors.NewAggregate(errs).Error()`: one message alone, several
/// joined by `, ` inside brackets, duplicates dropped.
pub(crate) fn go_aggregate(messages: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::with_capacity(messages.len());
    for m in messages {
        if !unique.contains(&m.as_str()) {
            unique.push(m);
        }
    }
    match unique.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_matches_go_formatting() {
        assert_eq!(go_aggregate(&[]), "");
        assert_eq!(go_aggregate(&["a".into()]), "a");
        assert_eq!(go_aggregate(&["a".into(), "a".into()]), "a");
        assert_eq!(
            go_aggregate(&["a".into(), "b".into(), "a".into()]),
            "[a, b]"
        );
    }

    #[test]
    fn status_predicates() {
        assert!(CallStatus::Succeeded.remove_called());
        assert!(CallStatus::Failed.remove_called());
        assert!(!CallStatus::StopFailed.remove_called());
        assert!(!CallStatus::NotAttempted.succeeded());
        assert_eq!(std::mem::size_of::<CallStatus>(), 1);
    }
}
