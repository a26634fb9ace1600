//! Authorization, least privilege: what a role may read, do and see. Nothing is granted by
//! default; every event field a role is not given is replaced by [`REDACTED`] in every response
//! (and in the audit record of what was shown).

use crate::config::{Permission, RoleSettings};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use tollgate_schemas::Route;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// One role's grants.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    queues: BTreeSet<Route>,
    actions: BTreeSet<Permission>,
    fields: BTreeSet<String>,
}

impl Role {
    pub fn new(name: &str, settings: &RoleSettings) -> Role {
        Role {
            name: name.to_owned(),
            queues: settings.queues.clone(),
            actions: settings.actions.clone(),
            fields: settings.fields.clone(),
        }
    }

    pub fn can_read(&self, queue: Route) -> bool {
        self.queues.contains(&queue)
    }

    pub fn can(&self, permission: Permission) -> bool {
        self.actions.contains(&permission)
    }

    /// The queues this role reads, in a fixed order (sync first).
    pub fn queues(&self) -> impl Iterator<Item = Route> + '_ {
        [Route::SyncReview, Route::AsyncReview].into_iter().filter(|q| self.can_read(*q))
    }

    /// The event with every field this role may not see replaced by [`REDACTED`].
    pub fn redact(&self, event: &Map<String, Value>) -> Map<String, Value> {
        redact_object(event, "", &self.fields)
    }

    /// A feature name as this role may see it: a one-hot feature (`field=value`) of a field the
    /// role may not see keeps its field name and hides the value.
    pub fn feature_name(&self, feature: &str) -> String {
        match feature.split_once('=') {
            Some((field, _)) if !self.sees(field) => format!("{field}={REDACTED}"),
            _ => feature.to_owned(),
        }
    }

    /// True when the role sees the whole of `path`.
    pub fn sees(&self, path: &str) -> bool {
        self.fields.contains(path) || path.rsplit_once('.').is_some_and(|(parent, _)| self.sees(parent))
    }
}

fn redact_object(object: &Map<String, Value>, prefix: &str, visible: &BTreeSet<String>) -> Map<String, Value> {
    object
        .iter()
        .map(|(key, value)| {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            let shown = if visible.contains(&path) {
                value.clone()
            } else if let (Value::Object(inner), true) = (value, has_child(visible, &path)) {
                Value::Object(redact_object(inner, &path, visible))
            } else {
                Value::String(REDACTED.to_owned())
            };
            (key.clone(), shown)
        })
        .collect()
}

/// True when some visible path lies below `path`.
fn has_child(visible: &BTreeSet<String>, path: &str) -> bool {
    let prefix = format!("{path}.");
    visible.range(prefix.clone()..).next().is_some_and(|p| p.starts_with(&prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(fields: &[&str]) -> Role {
        let settings = RoleSettings {
            queues: [Route::SyncReview].into(),
            actions: [Permission::Claim].into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        };
        Role::new("r", &settings)
    }

    #[test]
    fn only_listed_fields_are_shown_at_any_depth() {
        let event = json!({
            "account_id": "acct-1", "amount": 10.5,
            "card": {"country": "DE", "pan": "4111", "issuer": {"name": "bank", "bin": "411111"}}
        });
        let r = role(&["amount", "card.country", "card.issuer.name"]);
        assert_eq!(
            Value::Object(r.redact(event.as_object().unwrap())),
            json!({
                "account_id": REDACTED, "amount": 10.5,
                "card": {"country": "DE", "pan": REDACTED, "issuer": {"name": "bank", "bin": REDACTED}}
            })
        );
        // No fields: everything redacted, the shape kept.
        let shown = role(&[]).redact(event.as_object().unwrap());
        assert_eq!(shown["card"], json!(REDACTED));
        assert_eq!(shown["amount"], json!(REDACTED));
        // A whole object granted.
        assert_eq!(role(&["card"]).redact(event.as_object().unwrap())["card"], event["card"]);
    }

    #[test]
    fn grants_are_exactly_the_configured_ones() {
        let r = role(&["amount"]);
        assert!(r.can_read(Route::SyncReview) && !r.can_read(Route::AsyncReview));
        assert!(r.can(Permission::Claim) && !r.can(Permission::Approve) && !r.can(Permission::Signoff));
        assert_eq!(r.queues().collect::<Vec<_>>(), vec![Route::SyncReview]);
    }

    #[test]
    fn one_hot_features_hide_values_of_hidden_fields() {
        let r = role(&["country", "card"]);
        assert_eq!(r.feature_name("merchant_category=gambling"), "merchant_category=[redacted]");
        assert_eq!(r.feature_name("country=NG"), "country=NG");
        assert_eq!(r.feature_name("card.brand=visa"), "card.brand=visa");
        assert_eq!(r.feature_name("amount"), "amount");
    }
}
