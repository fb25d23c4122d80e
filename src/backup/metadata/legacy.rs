//! Backups written by leger's Go implementation: their metadata has
//! leger's documented fields only (the first ones of [`Metadata`], under
//! leger's names), so every field of ours defaults when absent and such a
//! backup loads as legacy: nothing in it can be verified.

use super::Metadata;

impl Metadata {
    /// Whether this was written by leger's Go implementation (no checksums:
    /// nothing can be verified).
    pub fn is_legacy(&self) -> bool {
        self.format_version.is_none()
    }
}

/// A volume listed by leger existed when its backup was taken.
pub(super) fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn leger_go_metadata_loads_as_legacy() {
        let json = br#"{"id":"web-2025-01-01-000000","deployment_name":"web",
            "created_at":"2025-01-01T00:00:00Z","type":"manual","reason":"manual","size":10,
            "quadlet_files":["web.container"],
            "volumes":[{"name":"systemd-data","archive_path":"volumes/systemd-data.tar","size":10}]}"#;
        let m = Metadata::parse(json, Path::new("m.json")).unwrap();
        assert!(m.is_legacy());
        assert!(m.volumes[0].existed);
    }
}
