//! Small values every planner takes or returns.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An identifier of a cache record, image, container, sandbox or pod.
///
/// Cheap to clone (a shared string), ordered by its text, so that sorting by
/// id is the deterministic last resort of every tie-break.
#[derive(Clone, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Id(Arc<str>);

impl Id {
    /// An id with the given text.
    pub fn new(text: impl AsRef<str>) -> Self {
        Self(Arc::from(text.as_ref()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Id {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Id {
    fn from(text: String) -> Self {
        Self(Arc::from(text))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::new(text))
    }
}

/// A number of bytes, printed for humans in binary units (`1.5 GiB`).
///
/// Only formatting lives here; parsing follows Docker's rules through
/// [`crate::ram_in_bytes`] and [`crate::from_human_size`].
#[derive(
    Clone, Copy, Debug, Default, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize,
)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    /// `512 B`, `1.0 KiB`, `26.4 GiB`: one decimal from KiB on, the format
    /// the kubelet's newest disk-space messages use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

/// Statistics of the filesystem holding an engine's data.
///
/// BuildKit reads `free` (free blocks including those reserved for root,
/// statfs `f_bfree`); the kubelet reads `available` (`f_bavail`). Engines
/// that cannot tell them apart report the same number twice.
#[derive(Clone, Copy, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct DiskStats {
    /// Size of the filesystem in bytes.
    pub total: u64,
    /// Free bytes, including blocks reserved for the superuser.
    pub free: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

impl DiskStats {
    /// Stats where free and available are the same number.
    pub const fn new(total: u64, free: u64) -> Self {
        Self {
            total,
            free,
            available: free,
        }
    }

    /// Bytes in use (`total - free`, never negative).
    pub const fn used(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_size_display() {
        assert_eq!(ByteSize(0).to_string(), "0 B");
        assert_eq!(ByteSize(1023).to_string(), "1023 B");
        assert_eq!(ByteSize(1024).to_string(), "1.0 KiB");
        assert_eq!(ByteSize(1536 * 1024 * 1024).to_string(), "1.5 GiB");
        assert_eq!(ByteSize(100 * (1 << 30)).to_string(), "100.0 GiB");
    }

    #[test]
    fn ids_order_by_text() {
        let mut ids = vec![Id::new("b"), Id::new("a"), Id::new("c")];
        ids.sort();
        assert_eq!(ids, vec![Id::new("a"), Id::new("b"), Id::new("c")]);
    }
}
