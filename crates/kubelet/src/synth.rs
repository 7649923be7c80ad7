//! Synthetic node snapshots for benches, property tests and the simulator
//! (feature `synth`).
//!
//! Every generator is seeded and deterministic: the same arguments give
//! the same snapshot on every platform.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reclaim_model::{Id, Timestamp};

use crate::containers::{
    Container, ContainerSnapshot, ContainerState, Pod, PodState, Sandbox, SandboxState,
};
use crate::images::{ImageFsStats, ImageRecord, ImageRecords, ImageUser, ListedImage};

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn hex_id(rng: &mut ChaCha8Rng, prefix: &str) -> Id {
    let a: u128 = rng.random();
    let b: u128 = rng.random();
    Id::new(format!("{prefix}{a:032x}{b:032x}"))
}

fn uid(rng: &mut ChaCha8Rng) -> Id {
    let v: u128 = rng.random();
    let h = format!("{v:032x}");
    Id::new(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// The shape of a synthetic node for the container GC.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ContainerNode {
    /// Pods on the node.
    pub pods: usize,
    /// Container names per pod (each pod/name pair is one evict unit).
    pub names_per_pod: usize,
    /// Dead (exited, sometimes created or unknown) containers per unit.
    pub dead_per_unit: usize,
    /// Percent of pods that are deleted (their containers all go in step 1).
    pub deleted_percent: u32,
    /// Whether each unit also has one running container.
    pub running: bool,
}

impl ContainerNode {
    /// The bench shape: 50,000 pods with 2 names each (100,000 units),
    /// 10 dead containers per unit (1,000,000), 1 % deleted pods, no
    /// running containers.
    pub const BENCH: Self = Self {
        pods: 50_000,
        names_per_pod: 2,
        dead_per_unit: 10,
        deleted_percent: 1,
        running: false,
    };
}

/// A container snapshot of the given shape at `now`: creation times are
/// spread over the 30 days before `now` (nanosecond resolution), each pod
/// has one not-ready sandbox that its containers name, and one pod log
/// directory.
///
/// The container listing is shuffled, and every string is allocated in
/// listing order, one allocation per field, as a JSON or protobuf decoder
/// would: benches then see the memory layout of a real snapshot.
pub fn container_snapshot(seed: u64, node: ContainerNode, now: Timestamp) -> ContainerSnapshot {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let now_ns = now.unix_nanos();
    let created = |rng: &mut ChaCha8Rng| {
        Timestamp::from_unix_nanos(now_ns - i128::from(rng.random_range(0..30 * NANOS_PER_DAY)))
    };
    let pod_uids: Vec<String> = (0..node.pods).map(|_| uid(&mut rng).to_string()).collect();
    let sandbox_ids: Vec<String> = (0..node.pods)
        .map(|_| hex_id(&mut rng, "").to_string())
        .collect();
    // (pod, name, state, created) for every container, in pod order.
    let per_pod = node.names_per_pod * (node.dead_per_unit + usize::from(node.running));
    let mut specs = Vec::with_capacity(node.pods * per_pod);
    for p in 0..node.pods {
        for name in 0..node.names_per_pod {
            for k in 0..node.dead_per_unit + usize::from(node.running) {
                let state = if node.running && k == 0 {
                    ContainerState::Running
                } else {
                    match rng.random_range(0..20) {
                        0 => ContainerState::Created,
                        1 => ContainerState::Unknown,
                        _ => ContainerState::Exited,
                    }
                };
                specs.push((p, name, state, created(&mut rng)));
            }
        }
    }
    // Runtimes list in no particular order.
    for i in (1..specs.len()).rev() {
        let j = rng.random_range(0..=i);
        specs.swap(i, j);
    }
    let mut snapshot = ContainerSnapshot {
        taken_at: Some(now),
        ..ContainerSnapshot::default()
    };
    snapshot.containers.reserve(specs.len());
    for (p, name, state, created_at) in specs {
        snapshot.containers.push(Container {
            id: hex_id(&mut rng, ""),
            pod_uid: Id::new(&pod_uids[p]),
            name: Id::new(format!("container-{name}")),
            state,
            created_at,
            sandbox_id: Some(Id::new(&sandbox_ids[p])),
        });
    }
    for (p, pod) in pod_uids.iter().enumerate() {
        let state = if rng.random_range(0..100) < node.deleted_percent {
            PodState::Deleted
        } else {
            PodState::Active
        };
        snapshot.pods.push(Pod {
            uid: Id::new(pod),
            state,
        });
        snapshot.sandboxes.push(Sandbox {
            id: Id::new(&sandbox_ids[p]),
            pod_uid: Id::new(pod),
            state: SandboxState::NotReady,
            created_at: created(&mut rng),
        });
        snapshot.pod_log_dirs.push(format!("default_pod-{p}_{pod}"));
    }
    snapshot.pod_log_dirs.sort();
    snapshot
}

/// A synthetic image node: a runtime listing, the containers using some of
/// the images, and records as earlier detections left them.
#[derive(Clone, Debug)]
pub struct ImageNode {
    /// The runtime's image listing.
    pub images: Vec<ListedImage>,
    /// Containers using images (about one image in ten is in use).
    pub users: Vec<ImageUser>,
    /// Records with first-detected times over the last 60 days and
    /// last-used times over the last 30 days (a fifth never used),
    /// refreshed by a detection at `now` (so in-use flags are set).
    pub records: ImageRecords,
}

/// An image node with `n` images at `now`: `sha256:` ids, sizes from 1 MiB
/// to 1 GiB, 1 % pinned, 10 % used by a container. Strings are allocated
/// in listing order.
pub fn image_node(seed: u64, n: usize, now: Timestamp) -> ImageNode {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let now_ns = now.unix_nanos();
    let mut images = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n / 10 + 1);
    let mut history = Vec::with_capacity(n);
    for _ in 0..n {
        let id = hex_id(&mut rng, "sha256:");
        let size = rng.random_range(1u64 << 20..1u64 << 30);
        let pinned = rng.random_range(0..100) == 0;
        if rng.random_range(0..10) == 0 {
            users.push(ImageUser {
                id: Some(hex_id(&mut rng, "")),
                image_id: Id::new(id.as_str()),
                state: Some(ContainerState::Running),
            });
        }
        let first = now_ns - i128::from(rng.random_range(0..60 * NANOS_PER_DAY));
        let last = (rng.random_range(0..5) != 0).then(|| {
            Timestamp::from_unix_nanos(now_ns - i128::from(rng.random_range(0..30 * NANOS_PER_DAY)))
        });
        history.push(ImageRecord {
            first_detected: Timestamp::from_unix_nanos(first),
            last_used: last,
            size_bytes: size,
            pinned,
        });
        images.push(ListedImage {
            id,
            size_bytes: size,
            pinned,
        });
    }
    let mut records = ImageRecords::new();
    for (image, record) in images.iter().zip(history) {
        records.insert(image.id.as_str(), record);
    }
    records.detect(&images, &users, now, now);
    records.release_buffers();
    ImageNode {
        images,
        users,
        records,
    }
}

/// Image filesystem stats under which the space pass must free
/// `percent` % of the bytes of the records that are neither in use nor
/// pinned, given `low_threshold_percent`: the images fill the disk except
/// for a twentieth of it, and `available` is set so that
/// `capacity * (100 - low) / 100 - available` is the wanted target.
pub fn fs_for_target(node: &ImageNode, low_threshold_percent: i32, percent: u64) -> ImageFsStats {
    let mut total: u64 = 0;
    let mut candidates: u64 = 0;
    for (id, record) in node.records.sorted() {
        total += record.size_bytes;
        if !record.pinned && !node.records.is_in_use(id) {
            candidates += record.size_bytes;
        }
    }
    let capacity = total + total / 20;
    let target = candidates * percent / 100;
    let low_room = capacity / 100 * (100 - low_threshold_percent as u64);
    ImageFsStats::new(capacity, low_room.saturating_sub(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_snapshots_are_deterministic_and_shaped() {
        let node = ContainerNode {
            pods: 20,
            names_per_pod: 2,
            dead_per_unit: 3,
            deleted_percent: 10,
            running: true,
        };
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let a = container_snapshot(7, node, now);
        let b = container_snapshot(7, node, now);
        assert_eq!(a, b);
        assert_eq!(a.containers.len(), 20 * 2 * 4);
        assert_eq!(a.sandboxes.len(), 20);
        assert!(a.validate().is_ok());
        assert!(a.containers.iter().all(|c| c.created_at <= now));
        assert_ne!(a, container_snapshot(8, node, now));
    }

    #[test]
    fn image_nodes_are_deterministic_and_the_target_is_met() {
        let now = Timestamp::from_unix_secs(1_700_000_000);
        let node = image_node(3, 500, now);
        assert_eq!(node.images.len(), 500);
        assert_eq!(node.records.len(), 500);
        assert_eq!(image_node(3, 500, now).images, node.images);
        let fs = fs_for_target(&node, 50, 50);
        let cap = fs.capacity_bytes.unwrap() as i64;
        let avail = fs.available_bytes.unwrap() as i64;
        assert!(100 - avail * 100 / cap >= 85);
    }
}
