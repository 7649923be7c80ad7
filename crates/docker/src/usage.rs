//! Image last use, tracked from the daemon's events.
//!
//! Docker does not record when an image was last used. Like docuum, reclaim
//! watches `/events`: a container created, started, restarted, unpaused or
//! exec'd into uses its image; an image pulled, tagged, loaded or imported
//! is used by that act. [`ImageUsage`] keeps, per image id, when it was
//! first seen and last used; [`ImageUsage::apply`] folds that into the
//! kubelet image records the image collector plans from, so that MinAge
//! (from first seen) and the LRU order (last used) hold across restarts of
//! the agent once the state is saved.

use std::collections::{BTreeMap, HashSet};

use reclaim_kubelet::ImageRecord;
use reclaim_model::{Id, Timestamp};
use reclaim_runtime::{ImageGcState, ImageInfo};
use serde::{Deserialize, Serialize};

use crate::runtime::DockerEvent;

/// When an image was first seen and last used.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct ImageUse {
    /// The first event (or listing) that showed the image.
    pub first_seen: Timestamp,
    /// The last event that used it.
    pub last_used: Timestamp,
}

/// Per-image use, keyed by image id, in id order.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ImageUsage {
    images: BTreeMap<Id, ImageUse>,
}

/// What an event says was used.
#[derive(Clone, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum UseOf {
    /// A container (by id) used its image; `image` is the reference it was
    /// created from, as the event names it.
    Container {
        /// The container id.
        id: String,
        /// The image reference from the event's attributes, if any.
        image: Option<String>,
    },
    /// An image was used directly; the reference is an id or a name.
    Image(String),
}

/// The container actions that count as using the container's image.
pub const CONTAINER_USE_ACTIONS: [&str; 6] = [
    "create",
    "start",
    "restart",
    "unpause",
    "exec_create",
    "exec_start",
];

/// The image actions that count as using the image.
pub const IMAGE_USE_ACTIONS: [&str; 5] = ["pull", "tag", "load", "import", "create"];

/// What `event` used, if anything. Exec actions carry the command after a
/// colon (`exec_start: sh`); only the part before counts.
pub fn use_of(event: &DockerEvent) -> Option<UseOf> {
    let action = event.action.split(':').next().unwrap_or("").trim();
    match event.kind.as_str() {
        "container" if CONTAINER_USE_ACTIONS.contains(&action) => Some(UseOf::Container {
            id: event.actor.clone(),
            image: event.attributes.get("image").cloned(),
        }),
        "image" if IMAGE_USE_ACTIONS.contains(&action) && !event.actor.is_empty() => {
            Some(UseOf::Image(event.actor.clone()))
        }
        _ => None,
    }
}

impl ImageUsage {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `image` was used at `at`. Returns whether anything
    /// changed (a later use than known, or a new image).
    pub fn record(&mut self, image: Id, at: Timestamp) -> bool {
        match self.images.get_mut(&image) {
            Some(u) => {
                let mut changed = false;
                if at > u.last_used {
                    u.last_used = at;
                    changed = true;
                }
                if at < u.first_seen {
                    u.first_seen = at;
                    changed = true;
                }
                changed
            }
            None => {
                self.images.insert(
                    image,
                    ImageUse {
                        first_seen: at,
                        last_used: at,
                    },
                );
                true
            }
        }
    }

    /// The use of one image.
    pub fn get(&self, id: &str) -> Option<ImageUse> {
        self.images.get(id).copied()
    }

    /// Number of images known.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether no image is known.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Every image with its use, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &ImageUse)> {
        self.images.iter()
    }

    /// For a first start without saved state: every listed image not known
    /// yet counts as seen at `now` and last used when it was created (the
    /// best guess docuum also makes), so that the LRU order starts from
    /// the images' ages instead of a tie. MinAge still counts from `now`.
    pub fn seed(&mut self, images: &[ImageInfo], now: Timestamp) {
        for i in images {
            self.images.entry(i.id.clone()).or_insert(ImageUse {
                first_seen: now,
                last_used: i.created.min(now),
            });
        }
    }

    /// Drops images that are not in `listed` (removed from the daemon).
    pub fn retain_listed(&mut self, listed: &HashSet<Id>) {
        self.images.retain(|id, _| listed.contains(id));
    }

    /// Folds the tracked use into the image collector's records: an image
    /// without a record gets one (first detected when first seen, last
    /// used when last used; size and pin come from the next detection);
    /// an image with a record gets the later of the two last-use times and
    /// the earlier of the two first-detected times.
    pub fn apply(&self, state: &mut ImageGcState) {
        for (id, u) in &self.images {
            let record = match state.records.get(id.as_str()) {
                Some(r) => ImageRecord {
                    first_detected: r.first_detected.min(u.first_seen),
                    last_used: Some(r.last_used.map_or(u.last_used, |l| l.max(u.last_used))),
                    ..r
                },
                None => ImageRecord {
                    first_detected: u.first_seen,
                    last_used: Some(u.last_used),
                    size_bytes: 0,
                    pinned: false,
                },
            };
            state.records.insert(id.as_str(), record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, action: &str, actor: &str, image: Option<&str>) -> DockerEvent {
        DockerEvent {
            time: Timestamp::from_unix_secs(10),
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            attributes: image
                .map(|i| [("image".to_owned(), i.to_owned())].into_iter().collect())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn events_that_use_images() {
        assert_eq!(
            use_of(&event("container", "start", "c1", Some("busybox"))),
            Some(UseOf::Container {
                id: "c1".into(),
                image: Some("busybox".into())
            })
        );
        assert!(matches!(
            use_of(&event("container", "exec_start: sh -c ls", "c1", None)),
            Some(UseOf::Container { .. })
        ));
        assert_eq!(use_of(&event("container", "die", "c1", None)), None);
        assert_eq!(
            use_of(&event("image", "pull", "busybox:latest", None)),
            Some(UseOf::Image("busybox:latest".into()))
        );
        assert_eq!(use_of(&event("image", "delete", "sha256:x", None)), None);
        assert_eq!(use_of(&event("image", "untag", "sha256:x", None)), None);
        assert_eq!(use_of(&event("network", "create", "n", None)), None);
    }

    #[test]
    fn uses_keep_the_extremes() {
        let t = Timestamp::from_unix_secs;
        let mut u = ImageUsage::new();
        assert!(u.record(Id::from("a"), t(10)));
        assert!(u.record(Id::from("a"), t(30)));
        assert!(!u.record(Id::from("a"), t(20)));
        assert!(u.record(Id::from("a"), t(5)));
        assert_eq!(
            u.get("a").unwrap(),
            ImageUse {
                first_seen: t(5),
                last_used: t(30)
            }
        );
        let listed: HashSet<Id> = [Id::from("b")].into_iter().collect();
        u.retain_listed(&listed);
        assert!(u.is_empty());
    }

    #[test]
    fn apply_merges_into_records() {
        let t = Timestamp::from_unix_secs;
        let mut state = ImageGcState::default();
        state.records.insert(
            "known",
            ImageRecord {
                first_detected: t(100),
                last_used: Some(t(150)),
                size_bytes: 7,
                pinned: false,
            },
        );
        let mut u = ImageUsage::new();
        u.record(Id::from("known"), t(120));
        u.record(Id::from("known"), t(200));
        u.record(Id::from("new"), t(50));
        u.apply(&mut state);
        let known = state.records.get("known").unwrap();
        assert_eq!(known.first_detected, t(100));
        assert_eq!(known.last_used, Some(t(200)));
        assert_eq!(known.size_bytes, 7);
        let new = state.records.get("new").unwrap();
        assert_eq!(new.first_detected, t(50));
        assert_eq!(new.last_used, Some(t(50)));
    }

    #[test]
    fn seeding_uses_creation_times() {
        let t = Timestamp::from_unix_secs;
        let mut u = ImageUsage::new();
        u.record(Id::from("seen"), t(500));
        let images = vec![
            ImageInfo::new("seen", 1, t(1)),
            ImageInfo::new("old", 1, t(2)),
            ImageInfo::new("future", 1, t(9_999)),
        ];
        u.seed(&images, t(1_000));
        assert_eq!(u.get("seen").unwrap().last_used, t(500));
        assert_eq!(
            u.get("old").unwrap(),
            ImageUse {
                first_seen: t(1_000),
                last_used: t(2)
            }
        );
        assert_eq!(u.get("future").unwrap().last_used, t(1_000));
    }
}
