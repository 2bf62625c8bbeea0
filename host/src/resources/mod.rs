//! The resource manager (DESIGN.md section 8): reads the machine about
//! once a second and decides how much work this process may start.
//!
//! - [`figures`]: where the numbers come from (sysinfo, or a test's).
//! - [`governor`]: the decisions (smoothing, hysteresis, admission by
//!   priority class, AIMD concurrency), a pure state machine.
//! - [`manager`]: the two together on a sampling thread, shared by the
//!   worker (which asks before every claim) and the API (which shows it).
//!
//! Model endpoints that push back have their own limits, in
//! `sandbox::endpoints`.

pub mod figures;
pub mod governor;
pub mod manager;

pub use figures::{Figures, SetFigures, SystemFigures, Usage};
pub use governor::{Admission, Governor, Pressure, Thresholds};
pub use manager::{ManagerStatus, ResourceManager, ResourceSettings};
