//! Resolving a recipe from its layers: built-in defaults ← recipe file ← flags ← `--set`.

use std::path::{Path, PathBuf};

use super::{MethodConfig, Recipe, legacy};
use crate::error::{Error, Result};
use crate::method::MethodName;

/// What the command line says about the recipe.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub method: Option<MethodName>,
    pub recipe_file: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<usize>,
    pub seed: Option<u64>,
    pub sets: Vec<String>,
    /// `--init`: `train.init`.
    pub init: Option<PathBuf>,
}

/// Recipe keys that hold file paths.
const PATH_KEYS: [&str; 2] = ["data.path", "train.init"];

/// One value two recipes disagree on ([`Recipe::differences`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// Dotted key, e.g. `train.seed`.
    pub key: String,
    /// The value in the recipe `differences` was called on, as TOML.
    pub ours: String,
    /// The value in the other recipe.
    pub theirs: String,
}

fn flatten(
    table: &toml::Table,
    prefix: &str,
    out: &mut std::collections::BTreeMap<String, toml::Value>,
) {
    for (key, value) in table {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => flatten(t, &full, out),
            v => {
                out.insert(full, v.clone());
            }
        }
    }
}

pub(super) fn parse_toml(text: &str, origin: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .map_err(|e| Error::Recipe(format!("{origin}: not valid TOML: {e}")))
}

/// Copies `overlay` onto `base`, refusing keys the base does not have.
fn merge(base: &mut toml::Table, overlay: toml::Table, prefix: &str, origin: &str) -> Result<()> {
    for (key, value) in overlay {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &full, origin)?,
            (Some(slot), value) => *slot = value,
            (None, _) => return Err(unknown_key(base, &full, origin)),
        }
    }
    Ok(())
}

fn unknown_key(section: &toml::Table, key: &str, origin: &str) -> Error {
    let mut valid: Vec<&str> = section.keys().map(String::as_str).collect();
    valid.sort_unstable();
    Error::Recipe(format!(
        "{origin}: unknown key '{key}'; valid keys here: {}",
        valid.join(", ")
    ))
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// The dotted key a `--set key=value` assignment sets.
pub fn set_key(assignment: &str) -> &str {
    assignment.split('=').next().unwrap_or_default().trim()
}

/// Applies one `key=value` override (dotted key, TOML value; bare words are strings).
pub fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::Recipe(format!(
            "--set {assignment}: expected key=value, e.g. --set optim.base_lr=0.1"
        ))
    })?;
    let key = key.trim();
    let origin = format!("--set {assignment}");
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut section = &mut *table;
    let mut walked = String::new();
    for part in parts {
        walked = if walked.is_empty() {
            part.to_string()
        } else {
            format!("{walked}.{part}")
        };
        let exists = matches!(section.get(part), Some(toml::Value::Table(_)));
        if !exists {
            return Err(unknown_key(section, &walked, &origin));
        }
        section = match section.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => unreachable!(),
        };
    }
    if !section.contains_key(last) {
        return Err(unknown_key(section, key, &origin));
    }
    section.insert(last.to_string(), parse_value(raw.trim()));
    Ok(())
}

impl Recipe {
    /// Resolves the recipe: built-in defaults ← recipe file ← flags ← `--set`.
    pub fn resolve(o: &Overrides) -> Result<Recipe> {
        let file = match &o.recipe_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                Some(parse_toml(&text, &path.display().to_string())?)
            }
            None => None,
        };
        let file_method = file
            .as_ref()
            .and_then(|t| t.get("method"))
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .map(MethodName::parse)
            .transpose()?;
        let method = match (o.method, file_method) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Recipe(format!(
                    "method {a} contradicts method.name = \"{b}\" in {}",
                    o.recipe_file.as_ref().unwrap().display()
                )));
            }
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => {
                return Err(Error::Usage(
                    "no method given: name one, or give a recipe file with method.name".into(),
                ));
            }
        };
        let defaults = Recipe {
            method: MethodConfig::default_for(method),
            ..Recipe::default()
        };
        let mut table =
            toml::Table::try_from(defaults).map_err(|e| Error::Recipe(e.to_string()))?;
        merge(
            &mut table,
            parse_toml(method.builtin_recipe(), "built-in recipe")?,
            "",
            "built-in recipe",
        )?;
        if let (Some(mut file), Some(path)) = (file, &o.recipe_file) {
            let origin = path.display().to_string();
            legacy::drop_other_methods_keys(&mut file, method, &origin)?;
            merge(&mut table, file, "", &origin)?;
        }
        let origin = match &o.recipe_file {
            Some(path) => path.display().to_string(),
            None => "built-in recipe".to_string(),
        };
        Self::from_table(table, &origin)?.with_overrides(o)
    }

    /// This recipe with the command line's flags and `--set` pairs applied on top (the recipe
    /// file and method of `o` are not looked at), validated.
    pub fn with_overrides(mut self, o: &Overrides) -> Result<Recipe> {
        if let Some(data) = &o.data {
            self.data.path = data.display().to_string();
        }
        if let Some(epochs) = o.epochs {
            self.train.epochs = epochs;
        }
        if let Some(b) = o.batch_size {
            self.train.batch_size = b;
        }
        if let Some(init) = &o.init {
            self.train.init = init.display().to_string();
        }
        if let Some(seed) = o.seed {
            self.train.seed = seed;
        }
        if !o.sets.is_empty() {
            let mut table =
                toml::Table::try_from(&self).map_err(|e| Error::Recipe(e.to_string()))?;
            for set in &o.sets {
                // Another name would mean other settings: the method is chosen first.
                if set_key(set) == "method.name" {
                    return Err(Error::Recipe(
                        "method.name cannot be changed with --set; use --method".into(),
                    ));
                }
                apply_set(&mut table, set)?;
                // Checked after each one, so a wrong value names its own --set.
                Self::from_table(table.clone(), &format!("--set {set}"))?;
            }
            self = Self::from_table(table, "--set")?;
        }
        self.validate()?;
        Ok(self)
    }

    /// Deserialises a merged table; an error names `origin` (the layer that brought the value)
    /// and the key.
    pub(super) fn from_table(table: toml::Table, origin: &str) -> Result<Recipe> {
        let method = table.get("method").and_then(|m| m.as_table()).cloned();
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let mut key = e.path().to_string();
            if key == "method"
                && let Some(inner) = method.as_ref().and_then(MethodConfig::failing_key)
            {
                key = format!("method.{inner}");
            }
            Error::Recipe(format!("{origin}: {key}: {}", e.inner().message()))
        })
    }

    /// The values that differ between this recipe and `other`, as dotted keys. Paths
    /// (`data.path`, `train.init`) are equal when they name the same file.
    pub fn differences(&self, other: &Recipe) -> Vec<Difference> {
        let flat = |r: &Recipe| {
            let mut out = std::collections::BTreeMap::new();
            let table = toml::Table::try_from(r).expect("recipes serialise");
            flatten(&table, "", &mut out);
            out
        };
        let (a, b) = (flat(self), flat(other));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        let show = |v: Option<&toml::Value>| v.map_or("(none)".to_string(), |v| v.to_string());
        keys.into_iter()
            .filter(|key| {
                let (x, y) = (a.get(*key), b.get(*key));
                let same_file = || match (x.and_then(|v| v.as_str()), y.and_then(|v| v.as_str())) {
                    (Some(x), Some(y)) => matches!(
                        (std::fs::canonicalize(x), std::fs::canonicalize(y)),
                        (Ok(p), Ok(q)) if p == q
                    ),
                    _ => false,
                };
                x != y && !(PATH_KEYS.contains(&key.as_str()) && same_file())
            })
            .map(|key| Difference {
                key: key.clone(),
                ours: show(a.get(key)),
                theirs: show(b.get(key)),
            })
            .collect()
    }

    /// A resolved recipe file (a run's `recipe.toml`); one written before each method had its
    /// own settings loads too.
    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let origin = path.display().to_string();
        let mut table = parse_toml(&text, &origin)?;
        let name = table
            .get("method")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .map(MethodName::parse)
            .transpose()?;
        if let Some(name) = name {
            legacy::drop_other_methods_keys(&mut table, name, &origin)?;
        }
        let recipe = Self::from_table(table, &origin)?;
        recipe.validate()?;
        Ok(recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(method: MethodName, sets: &[&str]) -> Result<Recipe> {
        Recipe::resolve(&Overrides {
            method: Some(method),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn builtin_recipes_resolve_and_validate() {
        for &m in MethodName::ALL {
            let r = resolve(m, &[]).unwrap();
            assert_eq!(r.method.name(), m);
            // The resolved recipe round-trips through its own TOML.
            let back = Recipe::from_table(r.to_toml().parse().unwrap(), "test").unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn every_shipped_recipe_file_resolves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let photos = dir.join("photos");
        let files: Vec<_> = [dir, photos]
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        assert!(files.len() >= 20, "{files:?}");
        for path in files {
            let r = Recipe::resolve(&Overrides {
                recipe_file: Some(path.clone()),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(MethodName::ALL.contains(&r.method.name()));
            if path.parent().unwrap().ends_with("photos") {
                assert_eq!(
                    (r.augment.size, r.data.image_size),
                    (224, 0),
                    "{}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn a_recipe_written_before_per_method_settings_still_loads() {
        // A run directory's resolved recipe.toml from selfsup 0.1: every method's keys in
        // [method]; BYOL's own values kept, the others (at their old defaults) dropped.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipe-0.1-byol.toml");
        let old = Recipe::load(&path).unwrap();
        assert_eq!(old, resolve(MethodName::Byol, &[]).unwrap());
        // The same file given as --recipe resolves to the same recipe.
        let again = Recipe::resolve(&Overrides {
            recipe_file: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(again, old);
        let err = resolve(MethodName::Byol, &["method.name=dino"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("use --method"), "{err}");
        // Keys of other methods are refused when set explicitly now.
        let err = resolve(MethodName::Byol, &["method.lambda=0.1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key 'method.lambda'")
                && err.contains("base_momentum, head_bn, name, predictor, projector"),
            "{err}"
        );
    }

    #[test]
    fn set_overrides_typed_values() {
        let r = resolve(
            MethodName::Simsiam,
            &[
                "method.stop_gradient=false",
                "optim.base_lr=0.1",
                "augment.crop_scale=[0.3, 1.0]",
            ],
        )
        .unwrap();
        assert!(!r.method.settings::<crate::method::SimSiam>().stop_gradient);
        assert_eq!(r.optim.base_lr, 0.1);
        assert_eq!(r.augment.crop_scale, [0.3, 1.0]);
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = resolve(MethodName::Byol, &["optim.learning_rate=0.1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key 'optim.learning_rate'") && err.contains("base_lr"),
            "{err}"
        );
        let err = resolve(MethodName::Byol, &["nosuch.key=1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'nosuch'"), "{err}");
        let err = resolve(MethodName::Byol, &["train.batch_size=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.batch_size"), "{err}");
        let err = resolve(MethodName::Byol, &["augment.local_crops=6"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("augment.local_crops"), "{err}");
        let err = resolve(MethodName::Byol, &["optim.base_lr=fast"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set"), "{err}");
        let err = Recipe::resolve(&Overrides {
            method: Some(MethodName::Byol),
            batch_size: Some(0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("batch size"), "{err}");
    }
}
