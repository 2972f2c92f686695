//! The container runtimes the remediator asks for names, labels and state,
//! and tells to restart a container: the shared runtime layer (Docker,
//! Podman, CRI), chosen per container by its cgroup classification. Tests
//! use their own [`ContainerRuntime`] implementation.

pub use pidwarden_shared::runtime::{
    name_matches, ContainerInfo, Control as ContainerRuntime, PodContainer, RestartPolicy,
    RuntimeError, RuntimeFlags, Runtimes, RESTART_POLICY_LABEL,
};
