//! The one runner of the `restic` binary.

use crate::repository::RepositoryConfig;

/// A configured repository, reached by running `restic`.
#[derive(Debug, Clone)]
pub struct Restic {
    /// Its configuration.
    pub config: RepositoryConfig,
}
