//! Recipes written before each method had its own settings: their `[method]` held every
//! method's keys (one shared struct), and a method ignored the ones it did not read. Such a
//! recipe (a run's `recipe.toml`, or a copy passed with `--recipe`) still loads: a key that
//! belongs to other methods is dropped when it holds the old default, and named in an error
//! when it holds anything else.

use crate::error::{Error, Result};
use crate::method::{MethodConfig, MethodName};

/// The shared `[method]` keys and their defaults before per-method settings.
const SHARED_DEFAULTS: &str = r#"
projector = [512, 512, 512]
predictor = [128, 512]
stop_gradient = true
fix_predictor_lr = true
base_momentum = 0.99
temperature = 0.5
queue_size = 4096
shuffle_bn_groups = 2
lambda = 0.005
invariance_weight = 25.0
variance_weight = 25.0
covariance_weight = 1.0
mask_ratio = 0.75
mask_block = 2
mask_min_block = 4
norm_pix_loss = true
decoder_dim = 128
decoder_depth = 2
decoder_heads = 4
tokenizer = ""
codebook_size = 512
code_dim = 32
commitment = 0.25
restart_codes = true
prototypes = 1024
patch_prototypes = 1024
teacher_temperature = 0.07
warmup_teacher_temperature = 0.04
teacher_temperature_warmup_epochs = 0.0
centering = "ema"
center_momentum = 0.9
freeze_last_layer_epochs = 1.0
patch_loss_weight = 0.0
mask_ratio_min = 0.1
mask_probability = 0.5
koleo_weight = 0.0
shared_head = true
"#;

/// Removes from `recipe`'s `[method]` the shared keys that `method` does not have, when they hold
/// their old default; one that holds another value is an error naming it (`origin` says where
/// the recipe came from).
pub fn drop_other_methods_keys(
    recipe: &mut toml::Table,
    method: MethodName,
    origin: &str,
) -> Result<()> {
    let Some(toml::Value::Table(section)) = recipe.get_mut("method") else {
        return Ok(());
    };
    let own = toml::Table::try_from(MethodConfig::default_for(method))
        .map_err(|e| Error::Recipe(e.to_string()))?;
    let shared: toml::Table = SHARED_DEFAULTS.parse().expect("valid TOML");
    let foreign: Vec<String> = section
        .keys()
        .filter(|k| !own.contains_key(*k) && shared.contains_key(*k))
        .cloned()
        .collect();
    for key in foreign {
        let value = section.remove(&key).expect("listed above");
        if !same(&value, &shared[&key]) {
            let mut valid: Vec<&str> = own.keys().map(String::as_str).collect();
            valid.sort_unstable();
            return Err(Error::Recipe(format!(
                "{origin}: method.{key} = {value} is not a {method} setting (it was ignored before each method had its own settings); remove it. {method} reads: {}",
                valid.join(", ")
            )));
        }
    }
    Ok(())
}

/// TOML values equal as numbers too (`0.0` and `0`).
fn same(a: &toml::Value, b: &toml::Value) -> bool {
    match (a, b) {
        (toml::Value::Integer(x), toml::Value::Float(y))
        | (toml::Value::Float(y), toml::Value::Integer(x)) => *x as f64 == *y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn foreign_defaults_are_dropped_and_foreign_values_named() {
        let mut recipe = table(
            "[method]\nname = \"byol\"\nprojector = [512, 128]\nbase_momentum = 0.99\nlambda = 0.005\nqueue_size = 4096\ncentering = \"ema\"\n",
        );
        drop_other_methods_keys(&mut recipe, MethodName::Byol, "old.toml").unwrap();
        let keys: Vec<&String> = recipe["method"].as_table().unwrap().keys().collect();
        assert_eq!(keys, ["base_momentum", "name", "projector"]);

        let mut recipe = table("[method]\nname = \"byol\"\nlambda = 0.1\n");
        let err = drop_other_methods_keys(&mut recipe, MethodName::Byol, "old.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("old.toml: method.lambda = 0.1 is not a byol setting")
                && err.contains("base_momentum, head_bn, name, predictor, projector"),
            "{err}"
        );
    }

    #[test]
    fn the_shared_defaults_cover_every_methods_settings() {
        // Every key a method had when settings became per-method was one of the shared keys, so
        // an old recipe of any method only ever loses keys that belong to others. Keys added
        // since never appeared in an old recipe.
        const ADDED_SINCE: [&str; 2] = ["negatives", "head_bn"];
        let shared = table(SHARED_DEFAULTS);
        for &m in MethodName::ALL {
            let own = toml::Table::try_from(MethodConfig::default_for(m)).unwrap();
            let old_keys = own
                .keys()
                .filter(|k| *k != "name" && !ADDED_SINCE.contains(&k.as_str()));
            for key in old_keys {
                assert!(shared.contains_key(key), "{m}: {key}");
            }
        }
    }
}
