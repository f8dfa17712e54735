//! What the table of methods (`method_table!` in `method/mod.rs`) generates: [`MethodName`]
//! (how recipes and the command line spell each method), [`MethodConfig`] (the recipe's
//! `[method]`: the named method's own settings), the built-in recipes, and
//! [`crate::with_method!`], which runs code with the type that implements a name.

use serde::{Deserialize, Serialize};

use super::{About, Method, Needs, Settings};
use crate::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::nn::ModelConfig;

#[macro_export]
#[doc(hidden)]
macro_rules! __method_table_apply {
    ([$callback:ident $($args:tt)*] $($table:tt)*) => {
        $crate::$callback! { [$($args)*] $($table)* }
    };
}

/// Runs `$body` with `$M` bound to the method type that implements `$name` (a [`MethodName`]).
#[macro_export]
macro_rules! with_method {
    ($name:expr, $M:ident => $body:expr) => {
        $crate::method_table!(__with_method_arms $name, $M, $body)
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __with_method_arms {
    ([$name:expr, $M:ident, $body:expr] $($variant:ident = $cli:literal => $ty:ident,)+) => {
        match $name {
            $($crate::method::MethodName::$variant => {
                type $M = $crate::method::$ty;
                $body
            })+
        }
    };
}

#[macro_export]
#[doc(hidden)]
macro_rules! __define_method_enums {
    ([] $($variant:ident = $cli:literal => $ty:ident,)+) => {
        /// A method's name, as recipes and the command line spell it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum MethodName {
            $(#[serde(rename = $cli)] $variant,)+
        }

        impl MethodName {
            /// Every method, in the order of `selfsup methods`.
            pub const ALL: &'static [MethodName] = &[$(MethodName::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $cli,)+
                }
            }

            /// The shipped recipe (`recipes/<name>.toml`).
            pub fn builtin_recipe(self) -> &'static str {
                match self {
                    $(MethodName::$variant => include_str!(concat!("../../recipes/", $cli, ".toml")),)+
                }
            }
        }

        /// The recipe's `[method]` section: the named method's own settings.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "name")]
        pub enum MethodConfig {
            $(#[serde(rename = $cli)] $variant(<$crate::method::$ty as $crate::method::Method>::Config),)+
        }

        impl MethodConfig {
            pub fn name(&self) -> MethodName {
                match self {
                    $(MethodConfig::$variant(_) => MethodName::$variant,)+
                }
            }

            /// The settings' defaults for `name` (before its built-in recipe applies).
            pub fn default_for(name: MethodName) -> MethodConfig {
                match name {
                    $(MethodName::$variant => MethodConfig::$variant(Default::default()),)+
                }
            }

            /// The key inside a `[method]` table that fails to deserialise (serde's tagged enums
            /// report only "method").
            pub fn failing_key(section: &toml::Table) -> Option<String> {
                let name = MethodName::parse(section.get("name")?.as_str()?).ok()?;
                let mut settings = section.clone();
                settings.remove("name");
                let settings = toml::Value::Table(settings);
                match name {
                    $(MethodName::$variant => serde_path_to_error::deserialize::<_, <$crate::method::$ty as $crate::method::Method>::Config>(settings)
                        .err()
                        .map(|e| e.path().to_string()),)+
                }
            }

            fn as_any(&self) -> &dyn std::any::Any {
                match self {
                    $(MethodConfig::$variant(c) => c,)+
                }
            }
        }
    };
}

crate::method_table!(__define_method_enums);

impl MethodName {
    pub fn parse(name: &str) -> Result<MethodName> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == name.to_lowercase())
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.as_str()).collect();
                Error::Usage(format!(
                    "unknown method '{name}'; implemented: {} (see `selfsup methods`)",
                    names.join(", ")
                ))
            })
    }

    /// What `selfsup methods` says about the method.
    pub fn about(self) -> About {
        crate::with_method!(self, M => M::about(self))
    }

    /// What the method needs from the model and the views.
    pub fn needs(self) -> Needs {
        crate::with_method!(self, M => M::NEEDS)
    }
}

impl std::str::FromStr for MethodName {
    type Err = Error;

    fn from_str(name: &str) -> Result<MethodName> {
        MethodName::parse(name)
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::default_for(MethodName::Simsiam)
    }
}

impl MethodConfig {
    /// The settings of method `M`; `M` must be the type that implements [`Self::name`].
    pub fn settings<M: Method>(&self) -> &M::Config {
        self.as_any()
            .downcast_ref()
            .unwrap_or_else(|| panic!("{} is not configured by this type", self.name()))
    }

    /// Checks the settings (naming the field and the fix) and the method's needs against the
    /// model and the augmentations.
    pub fn validate(&self, model: &ModelConfig, augment: &AugmentConfig) -> Result<()> {
        let name = self.name();
        crate::with_method!(name, M => {
            check_needs(name, M::NEEDS, model, augment)?;
            self.settings::<M>()
                .validate(model, augment)
                .map_err(Error::Recipe)
        })
    }

    /// What to check when this run's embeddings collapse.
    pub fn collapse_hint(&self) -> &'static str {
        crate::with_method!(self.name(), M => M::collapse_hint(self.settings::<M>()))
    }
}

fn check_needs(
    name: MethodName,
    needs: Needs,
    model: &ModelConfig,
    augment: &AugmentConfig,
) -> Result<()> {
    if augment.local_crops > 0 && !needs.local_crops {
        let readers: Vec<&str> = MethodName::ALL
            .iter()
            .filter(|m| m.needs().local_crops)
            .map(|m| m.as_str())
            .collect();
        return Err(Error::Recipe(format!(
            "augment.local_crops = {}: multi-crop feeds the self-distillation methods ({}); {name} trains on its global views only, so set it to 0",
            augment.local_crops,
            readers.join(", ")
        )));
    }
    if needs.vit && !model.is_vit() {
        return Err(Error::Recipe(format!(
            "{name} masks ViT patches: set model.arch to vit-tiny, vit-small, vit-base or vit (with embed_dim, depth, heads)"
        )));
    }
    if augment.global_views() != needs.global_views {
        return Err(Error::Recipe(format!(
            "{name} trains on {} global view(s): give augment.blur_p and augment.solarize_p {} entries (one per view), not {}",
            needs.global_views,
            needs.global_views,
            augment.global_views()
        )));
    }
    Ok(())
}
