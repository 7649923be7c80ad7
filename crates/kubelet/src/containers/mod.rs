//! Container, sandbox and pod log garbage collection (spec section 1).

mod collector;
mod plan;
mod policy;
mod snapshot;

pub use collector::{ContainerCall, ContainerCollector, ContainerPlanner, plan_containers};
pub use plan::{
    CONTAINER_PLAN_SCHEMA, ContainerCounts, ContainerKeepReason, ContainerPlan, ContainerRemoval,
    EvictionStep, KeptContainer, KeptPodLogDir, KeptSandbox, PodLogKeepReason, PodLogRemoval,
    SandboxKeepReason, SandboxReason, SandboxRemoval, pod_uid_of_log_dir,
};
pub use policy::{
    ContainerGcOptions, ContainerGcPolicy, ContainerPolicyError, MAX_CONTAINERS_FLAG,
    MAX_PER_POD_CONTAINER_FLAG, MIN_AGE_FLAG, SubPasses,
};
pub use snapshot::{
    Container, ContainerSnapshot, ContainerState, Pod, PodState, PodStateProvider, PodStates,
    Sandbox, SandboxState, SnapshotError,
};
