//! The config a rolling update deploys: the run's config with fields set
//! on one deployment (and, for a code/args change, the application's
//! `args` replaced). Pure.

use serde_json::{Map, Value};

/// `base` with `set` applied to `app`'s `deployment` (added to the
/// application's `deployments` if the config did not list it) and `args`
/// replaced when given.
pub fn patched_config(
    base: &Value,
    app: &str,
    deployment: &str,
    set: &Map<String, Value>,
    args: Option<&Value>,
) -> Result<Value, String> {
    let mut config = base.clone();
    let apps = config
        .get_mut("applications")
        .and_then(Value::as_array_mut)
        .ok_or("the serve config has no applications")?;
    let app_value = apps
        .iter_mut()
        .find(|a| a.get("name").and_then(Value::as_str) == Some(app))
        .ok_or_else(|| format!("the serve config has no application {app:?}"))?;
    let app_map = app_value
        .as_object_mut()
        .ok_or("an application is not a mapping")?;
    if let Some(args) = args {
        app_map.insert("args".into(), args.clone());
    }
    let deployments = app_map
        .entry("deployments")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("`deployments` is not a list")?;
    let at = match deployments
        .iter()
        .position(|d| d.get("name").and_then(Value::as_str) == Some(deployment))
    {
        Some(at) => at,
        None => {
            deployments.push(serde_json::json!({ "name": deployment }));
            deployments.len() - 1
        }
    };
    let d = deployments[at]
        .as_object_mut()
        .ok_or("a deployment is not a mapping")?;
    for (k, v) in set {
        d.insert(k.clone(), v.clone());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_fields_on_the_named_deployment_only() {
        let base = json!({"applications": [{"name": "chain", "app": "chain",
            "deployments": [{"name": "count", "num_replicas": 3}, {"name": "normalize"}]}]});
        let set = json!({"user_config": {"v": 2}})
            .as_object()
            .unwrap()
            .clone();
        let next = patched_config(&base, "chain", "count", &set, None).unwrap();
        assert_eq!(
            next["applications"][0]["deployments"][0]["user_config"]["v"],
            2
        );
        assert_eq!(next["applications"][0]["deployments"][0]["num_replicas"], 3);
        assert!(next["applications"][0]["deployments"][1]
            .get("user_config")
            .is_none());
        let added =
            patched_config(&base, "chain", "pipeline", &set, Some(&json!({"x": 1}))).unwrap();
        assert_eq!(
            added["applications"][0]["deployments"][2]["name"],
            "pipeline"
        );
        assert_eq!(added["applications"][0]["args"]["x"], 1);
        assert!(patched_config(&base, "nope", "count", &set, None).is_err());
    }
}
