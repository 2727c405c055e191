//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource as JSON: `add`, `replace` and `remove`
//! with a path (`displayName`, `name.givenName`, `members[value eq "12"]`,
//! `emails[type eq "work"].value`) or without one (the value's members each applied).

use serde_json::{Map, Value};
use tarn_core::{Error, Result};

use super::filter::{self, Filter};

/// The schema a PATCH request names.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations one request may carry.
pub const MAX_OPERATIONS: usize = 1000;

fn invalid(message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid SCIM patch: {message}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Where an operation points.
struct Target {
    attribute: String,
    selector: Option<Filter>,
    sub: Option<String>,
}

fn target(path: &str) -> Result<Target> {
    let (head, selector, rest) = match path.find('[') {
        Some(open) => {
            let close = path
                .rfind(']')
                .filter(|close| *close > open)
                .ok_or_else(|| invalid(format!("path '{path}' misses ']'")))?;
            let rest = &path[close + 1..];
            let rest = match rest.strip_prefix('.') {
                Some(sub) => Some(sub),
                None if rest.is_empty() => None,
                None => return Err(invalid(format!("bad path '{path}'"))),
            };
            (
                &path[..open],
                Some(filter::parse(&path[open + 1..close])?),
                rest,
            )
        }
        None => (path, None, None),
    };
    let mut parts = filter::attribute_path(head)
        .map_err(|_| invalid(format!("bad path '{path}'")))?
        .into_iter();
    let attribute = parts.next().unwrap_or_default();
    let sub = match (parts.next(), rest) {
        (Some(sub), None) => Some(sub),
        (None, Some(sub)) => Some(
            filter::attribute_path(sub)
                .ok()
                .filter(|p| p.len() == 1)
                .and_then(|mut p| p.pop())
                .ok_or_else(|| invalid(format!("bad path '{path}'")))?,
        ),
        (None, None) => None,
        (Some(_), Some(_)) => return Err(invalid(format!("bad path '{path}'"))),
    };
    Ok(Target {
        attribute,
        selector,
        sub,
    })
}

/// The key of `object` naming `key` case-insensitively, or `key` itself.
fn key_of(object: &Map<String, Value>, key: &str) -> String {
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

fn object_of(value: &mut Value) -> Result<&mut Map<String, Value>> {
    value
        .as_object_mut()
        .ok_or_else(|| invalid("the resource is not an object"))
}

/// Whether two values of a multi-valued attribute are the same one: their `value`s when both
/// have one, else equal.
fn same(a: &Value, b: &Value) -> bool {
    match (filter::member(a, "value"), filter::member(b, "value")) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn apply_one(
    resource: &mut Value,
    op: Op,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<()> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        if op == Op::Remove {
            return Err(invalid("remove needs a path"));
        }
        let Some(Value::Object(members)) = value else {
            return Err(invalid("an operation without a path needs an object value"));
        };
        for (key, value) in members {
            apply_one(resource, op, Some(key), Some(value))?;
        }
        return Ok(());
    };
    let target = target(path)?;
    let object = object_of(resource)?;
    let key = key_of(object, &target.attribute);
    let needs_value = || value.ok_or_else(|| invalid(format!("{path}: missing value")));
    match (&target.selector, &target.sub, op) {
        (None, None, Op::Remove) => match (object.get_mut(&key), value) {
            // Remove the listed values from a multi-valued attribute (as Azure AD sends it).
            (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                items.retain(|item| !gone.iter().any(|g| same(item, g)));
            }
            _ => {
                object.remove(&key);
            }
        },
        (None, None, Op::Add) => {
            let value = needs_value()?;
            match (object.get_mut(&key), value) {
                (Some(Value::Array(items)), Value::Array(added)) => {
                    for item in added {
                        if !items.iter().any(|existing| same(existing, item)) {
                            items.push(item.clone());
                        }
                    }
                }
                (Some(Value::Array(items)), item) => {
                    if !items.iter().any(|existing| same(existing, item)) {
                        items.push(item.clone());
                    }
                }
                (Some(Value::Object(existing)), Value::Object(added)) => {
                    for (k, v) in added {
                        let k = key_of(existing, k);
                        existing.insert(k, v.clone());
                    }
                }
                _ => {
                    object.insert(key, value.clone());
                }
            }
        }
        (None, None, Op::Replace) => {
            object.insert(key, needs_value()?.clone());
        }
        (None, Some(sub), op) => {
            let parent = object
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()));
            let parent = parent
                .as_object_mut()
                .ok_or_else(|| invalid(format!("{path}: not a complex attribute")))?;
            let sub_key = key_of(parent, sub);
            if op == Op::Remove {
                parent.remove(&sub_key);
            } else {
                parent.insert(sub_key, needs_value()?.clone());
            }
        }
        (Some(selector), sub, op) => {
            let Some(Value::Array(items)) = object.get_mut(&key) else {
                return Err(invalid(format!("{path}: no values match")));
            };
            let matching: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, item)| selector.matches(item))
                .map(|(i, _)| i)
                .collect();
            if matching.is_empty() && op != Op::Remove {
                return Err(invalid(format!("{path}: no values match")));
            }
            match (sub, op) {
                (None, Op::Remove) => {
                    let mut index = 0;
                    items.retain(|_| {
                        index += 1;
                        !matching.contains(&(index - 1))
                    });
                }
                (None, _) => {
                    let value = needs_value()?;
                    for i in matching {
                        match (&mut items[i], value) {
                            (Value::Object(item), Value::Object(new)) if op == Op::Add => {
                                for (k, v) in new {
                                    let k = key_of(item, k);
                                    item.insert(k, v.clone());
                                }
                            }
                            (item, value) => *item = value.clone(),
                        }
                    }
                }
                (Some(sub), op) => {
                    for i in matching {
                        let item = items[i]
                            .as_object_mut()
                            .ok_or_else(|| invalid(format!("{path}: not complex values")))?;
                        let sub_key = key_of(item, sub);
                        if op == Op::Remove {
                            item.remove(&sub_key);
                        } else {
                            item.insert(sub_key, needs_value()?.clone());
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Applies a PATCH request's `Operations` to `resource`, all or none.
pub fn apply(resource: &Value, request: &Value) -> Result<Value> {
    if let Some(schemas) = filter::member(request, "schemas") {
        let listed = schemas
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == PATCH_SCHEMA));
        if !listed {
            return Err(invalid(format!("schemas must hold {}", PATCH_SCHEMA)));
        }
    }
    let operations = filter::member(request, "Operations")
        .and_then(Value::as_array)
        .filter(|ops| !ops.is_empty())
        .ok_or_else(|| invalid("Operations must be a list of at least one operation"))?;
    if operations.len() > MAX_OPERATIONS {
        return Err(invalid(format!(
            "at most {MAX_OPERATIONS} operations per request"
        )));
    }
    let mut patched = resource.clone();
    for operation in operations {
        let op = match filter::member(operation, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            other => {
                return Err(invalid(format!(
                    "op {other:?}: expected add, replace or remove"
                )));
            }
        };
        let path = match filter::member(operation, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(path)) => Some(path.as_str()),
            Some(other) => return Err(invalid(format!("path {other} is not a string"))),
        };
        apply_one(&mut patched, op, path, filter::member(operation, "value"))?;
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group() -> Value {
        json!({
            "id": "3",
            "displayName": "ops",
            "members": [{"value": "1", "display": "a"}, {"value": "2", "display": "b"}],
            "name": {"givenName": "x"},
        })
    }

    fn patched(ops: Value) -> Result<Value> {
        apply(
            &group(),
            &json!({"schemas": [PATCH_SCHEMA], "Operations": ops}),
        )
    }

    #[test]
    fn members_are_added_and_removed_as_clients_send_them() {
        let added = patched(
            json!([{"op": "add", "path": "members", "value": [{"value": "2"}, {"value": "9"}]}]),
        )
        .expect("add");
        assert_eq!(added["members"].as_array().expect("members").len(), 3);
        let removed =
            patched(json!([{"op": "remove", "path": "members[value eq \"1\"]"}])).expect("remove");
        assert_eq!(removed["members"], json!([{"value": "2", "display": "b"}]));
        let azure =
            patched(json!([{"op": "Remove", "path": "members", "value": [{"value": "2"}]}]))
                .expect("azure");
        assert_eq!(azure["members"], json!([{"value": "1", "display": "a"}]));
        let all = patched(json!([{"op": "remove", "path": "members"}])).expect("all");
        assert!(all.get("members").is_none());
        let replaced = patched(
            json!([{"op": "replace", "value": {"displayName": "platform", "externalId": "e-1"}}]),
        )
        .expect("replace");
        assert_eq!(
            (
                replaced["displayName"].as_str(),
                replaced["externalId"].as_str()
            ),
            (Some("platform"), Some("e-1"))
        );
        let sub = patched(json!([{"op": "replace", "path": "name.familyName", "value": "y"}, {"op": "replace", "path": "members[value eq \"2\"].display", "value": "B"}])).expect("sub");
        assert_eq!(sub["name"], json!({"givenName": "x", "familyName": "y"}));
        assert_eq!(sub["members"][1]["display"], "B");
        let cased =
            patched(json!([{"op": "replace", "path": "DISPLAYNAME", "value": "z"}])).expect("case");
        assert_eq!(cased["displayName"], "z");
    }

    #[test]
    fn bad_operations_change_nothing_and_say_why() {
        for ops in [
            json!([]),
            json!([{"op": "move", "path": "displayName", "value": "x"}]),
            json!([{"op": "replace", "path": "displayName"}]),
            json!([{"op": "replace", "path": "members[value eq \"7\"]", "value": {"value": "8"}}]),
            json!([{"op": "remove"}]),
            json!([{"op": "add", "value": "not an object"}]),
            json!([{"op": "add", "path": "members[value eq", "value": []}]),
            json!([{"op": "add", "path": 7, "value": []}]),
            json!([{"op": "replace", "path": "displayName", "value": "ok"}, {"op": "bad"}]),
        ] {
            let err = patched(ops.clone()).expect_err(&ops.to_string());
            assert!(err.message.starts_with("Invalid SCIM"), "{ops}: {err:?}");
        }
        let wrong_schema = apply(
            &group(),
            &json!({"schemas": ["x"], "Operations": [{"op": "remove", "path": "members"}]}),
        );
        assert!(wrong_schema.is_err());
    }
}
