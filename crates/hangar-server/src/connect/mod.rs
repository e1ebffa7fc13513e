//! Connecting a CLI account: connect sessions, credential capture, sealing, delivery and the
//! CLI's own status check.
//!
//! A session runs as one background task (`run.rs`) under its sign-in deadline: it makes a
//! *browser sandbox* for the person, starts the provider's login command in it (wrapped in
//! the browser desktop for the browser flow), records the prompt (viewer, verification URI and
//! code, or authorize URL), and watches the provider's credential files through the guest
//! agent. When they appear and pass the provider's checks they are sealed in the vault, and
//! the store marks the session `completed` in the same transaction as it stores them. Then the
//! browser sandbox is destroyed (a planned teardown: `destroyed`), the files are delivered to
//! every live sandbox of the person (`delivery.rs`, also run on every later boot through the
//! sandbox service's ready hook), and the CLI's status command runs in one of them.

mod delivery;
mod error;
mod refresh;
mod run;
mod service;

pub use error::ConnectError;
pub use refresh::{RefreshReport, TOKEN_ENDPOINT_TIMEOUT};
pub use service::{ConnectConfig, ConnectService, StartConnect, BROWSER_VNC_PORT};
