//! Where the parts of a parsed config were in the file ([`Layout`]), so
//! the build reports its problems at the paths the user wrote.

use super::ServeConfig;

/// Where the parts of a parsed config were in the file, so that problems
/// found later (by the build) are reported at the user's paths.
#[derive(Debug, Clone, Default)]
pub(super) struct Layout {
    /// One per application of the parsed config, in its order.
    pub(super) apps: Vec<AppLayout>,
}

#[derive(Debug, Clone)]
pub(super) struct AppLayout {
    /// The application's index in the file's `applications`.
    pub(super) index: usize,
    /// Whether the builder was named well (else the schema said why).
    pub(super) has_builder: bool,
    /// The field that named the builder: `app` or `import_path`.
    pub(super) builder_field: &'static str,
    /// One per deployment of the parsed application, in its order.
    pub(super) deployments: Vec<DeploymentLayout>,
}

#[derive(Debug, Clone)]
pub(super) struct DeploymentLayout {
    /// The deployment's index in the file's `deployments`.
    pub(super) index: usize,
    /// Whether `name` was given as a string (else the schema said why).
    pub(super) has_name: bool,
    /// How the file spells `actor_options` (`ray_actor_options` too).
    pub(super) actor_options: &'static str,
}

impl Layout {
    /// The layout of `config` as built in code (no file): indices as they
    /// are, main spellings.
    pub(super) fn of(config: &ServeConfig) -> Layout {
        Layout {
            apps: config
                .applications
                .iter()
                .enumerate()
                .map(|(index, app)| AppLayout {
                    index,
                    has_builder: true,
                    builder_field: "app",
                    deployments: (0..app.deployments.len())
                        .map(|index| DeploymentLayout {
                            index,
                            has_name: true,
                            actor_options: "actor_options",
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}
