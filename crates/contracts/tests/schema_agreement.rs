//! The Rust types and the `.avsc` files in `schemas/` agree, both ways:
//! - every record field of a schema is a field of the Rust type and vice versa;
//! - every Rust enum variant of a union is the schema's branch of the same name *and index*;
//! - every union branch, enum symbol and optional's null/non-null side of every schema is
//!   exercised by a sample, and every sample's values have the schema's types;
//! - the schemas the binary embeds are the committed files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value;
use scanstream_contracts::schema::SchemaFile;
use serde::Serialize;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

fn read_file_schema(file: SchemaFile) -> (String, Schema) {
    let path = schemas_dir().join(file.file_name());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (text, schema)
}

/// What the samples touched, to prove coverage.
#[derive(Default)]
struct Seen {
    marks: BTreeSet<String>,
}

struct Checker<'a> {
    names: &'a HashMap<Name, &'a Schema>,
    seen: Seen,
}

impl<'a> Checker<'a> {
    fn deref(&self, schema: &'a Schema) -> &'a Schema {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(name)
                .copied()
                .unwrap_or_else(|| panic!("unresolved {name:?}")),
            other => other,
        }
    }

    fn check(&mut self, value: &Value, schema: &'a Schema, path: &str) {
        let schema = self.deref(schema);
        match schema {
            Schema::Record(record) => {
                let Value::Record(fields) = value else {
                    panic!(
                        "{path}: schema record {} but Rust gives {value:?}",
                        record.name
                    )
                };
                let rust: BTreeSet<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
                let avro: BTreeSet<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
                assert_eq!(
                    rust, avro,
                    "{path}: fields of Rust type vs record {} differ",
                    record.name
                );
                for field in &record.fields {
                    let (_, v) = fields
                        .iter()
                        .find(|(n, _)| n == &field.name)
                        .unwrap_or_else(|| panic!("{path}.{} missing", field.name));
                    self.check(v, &field.schema, &format!("{path}.{}", field.name));
                }
            }
            Schema::Union(union) => {
                let branches = union.variants();
                let optional = branches.len() == 2 && matches!(branches[0], Schema::Null);
                if optional {
                    match value {
                        Value::Null | Value::Union(0, _) => {
                            self.seen.marks.insert(format!("{path}=null"));
                        }
                        Value::Union(_, inner) => {
                            self.seen.marks.insert(format!("{path}=some"));
                            self.check(inner, &branches[1], path);
                        }
                        other => {
                            self.seen.marks.insert(format!("{path}=some"));
                            self.check(other, &branches[1], path);
                        }
                    }
                    return;
                }
                // A Rust enum with newtype variants: apache-avro's schema-less serializer shows
                // the variant's index and name, which must be the branch's index and name.
                let Value::Record(parts) = value else {
                    panic!("{path}: union of records but Rust gives {value:?}")
                };
                let (index, variant) = match parts.first() {
                    Some((k, Value::Enum(i, name))) if k == "type" => (*i as usize, name.clone()),
                    other => panic!("{path}: expected an enum variant, got {other:?}"),
                };
                let inner = match parts.get(1) {
                    Some((k, Value::Union(_, inner))) if k == "value" => inner,
                    other => panic!("{path}: expected variant content, got {other:?}"),
                };
                let branch =
                    self.deref(branches.get(index).unwrap_or_else(|| {
                        panic!("{path}: Rust variant index {index} has no branch")
                    }));
                let branch_name = branch.name().map(|n| n.name().to_owned());
                assert_eq!(
                    branch_name.as_deref(),
                    Some(variant.as_str()),
                    "{path}: Rust variant #{index} is {variant} but union branch #{index} is {branch_name:?}"
                );
                self.seen.marks.insert(format!("{path}|{variant}"));
                self.check(inner, branch, &format!("{path}|{variant}"));
            }
            Schema::Enum(e) => {
                let Value::String(symbol) = value else {
                    panic!("{path}: enum {} but Rust gives {value:?}", e.name)
                };
                assert!(
                    e.symbols.contains(symbol),
                    "{path}: {symbol} is not a symbol of {}",
                    e.name
                );
                self.seen
                    .marks
                    .insert(format!("{}:{symbol}", e.name.name()));
            }
            Schema::Array(array) => {
                let Value::Array(items) = value else {
                    panic!("{path}: array but Rust gives {value:?}")
                };
                assert!(
                    !items.is_empty(),
                    "{path}: samples must hold at least one item"
                );
                for item in items {
                    self.check(item, &array.items, &format!("{path}[]"));
                }
            }
            Schema::String | Schema::Uuid(_) => {
                assert!(
                    matches!(value, Value::String(_)),
                    "{path}: string expected, got {value:?}"
                )
            }
            Schema::Long | Schema::TimestampMillis => {
                assert!(
                    matches!(value, Value::Long(_)),
                    "{path}: long expected, got {value:?}"
                )
            }
            Schema::Int => assert!(
                matches!(value, Value::Int(_)),
                "{path}: int expected, got {value:?}"
            ),
            Schema::Boolean => {
                assert!(
                    matches!(value, Value::Boolean(_)),
                    "{path}: boolean expected, got {value:?}"
                )
            }
            other => {
                panic!("{path}: schema type {other:?} is not used by scanstream; extend this test")
            }
        }
    }
}

/// Every mark the schema can produce: union branches, optional sides and enum symbols.
fn all_marks(
    schema: &Schema,
    names: &HashMap<Name, &Schema>,
    path: &str,
    out: &mut BTreeSet<String>,
) {
    let schema = match schema {
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        other => other,
    };
    match schema {
        Schema::Record(record) => {
            for field in &record.fields {
                all_marks(&field.schema, names, &format!("{path}.{}", field.name), out);
            }
        }
        Schema::Union(union) => {
            let branches = union.variants();
            if branches.len() == 2 && matches!(branches[0], Schema::Null) {
                out.insert(format!("{path}=null"));
                out.insert(format!("{path}=some"));
                all_marks(&branches[1], names, path, out);
            } else {
                for branch in branches {
                    let branch = match branch {
                        Schema::Ref { name } => names.get(name).copied().unwrap_or(branch),
                        other => other,
                    };
                    let name = branch
                        .name()
                        .map(|n| n.name().to_owned())
                        .unwrap_or_default();
                    out.insert(format!("{path}|{name}"));
                    all_marks(branch, names, &format!("{path}|{name}"), out);
                }
            }
        }
        Schema::Enum(e) => {
            for symbol in &e.symbols {
                out.insert(format!("{}:{symbol}", e.name.name()));
            }
        }
        Schema::Array(array) => all_marks(&array.items, names, &format!("{path}[]"), out),
        _ => {}
    }
}

fn agree<T: Serialize>(file: SchemaFile, samples: &[T]) {
    let (text, schema) = read_file_schema(file);
    assert_eq!(
        text,
        file.source(),
        "{} embedded copy differs from the file",
        file.file_name()
    );
    let resolved = ResolvedSchema::try_from(&schema).unwrap();
    let mut checker = Checker {
        names: resolved.get_names(),
        seen: Seen::default(),
    };
    for sample in samples {
        let value = apache_avro::to_value(sample).unwrap();
        checker.check(&value, &schema, "");
        // And the typed encoding with the file's schema accepts the sample.
        let mut writer = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
        writer
            .append_ser(sample)
            .unwrap_or_else(|e| panic!("{}: sample does not encode: {e}", file.file_name()));
    }
    let mut expected = BTreeSet::new();
    all_marks(&schema, resolved.get_names(), "", &mut expected);
    let missing: Vec<_> = expected.difference(&checker.seen.marks).collect();
    assert!(
        missing.is_empty(),
        "{}: no sample covers {missing:?}",
        file.file_name()
    );
}

#[test]
fn scan_command_agrees_with_its_schema() {
    agree(SchemaFile::ScanCommand, &common::commands());
}

#[test]
fn scan_event_agrees_with_its_schema() {
    agree(SchemaFile::ScanEvent, &common::events());
}

#[test]
fn finding_agrees_with_its_schema() {
    agree(SchemaFile::Finding, &common::findings());
}

#[test]
fn job_state_agrees_with_its_schema() {
    agree(SchemaFile::JobState, &common::states());
}

#[test]
fn schedule_agrees_with_its_schema() {
    agree(SchemaFile::Schedule, &common::schedules());
}

#[test]
fn schedule_ticks_agree_with_their_schema() {
    agree(SchemaFile::ScheduleTicks, &common::schedule_ticks());
}

#[test]
fn sighting_agrees_with_its_schema() {
    agree(SchemaFile::Sighting, &common::sightings());
}

#[test]
fn triage_decision_agrees_with_its_schema() {
    agree(SchemaFile::TriageDecision, &common::triage_decisions());
}

#[test]
fn inventory_item_agrees_with_its_schema() {
    agree(SchemaFile::InventoryItem, &common::inventory_items());
}

#[test]
fn every_schema_file_is_known_to_the_code() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(schemas_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    let known: BTreeSet<String> = SchemaFile::ALL
        .iter()
        .map(|f| f.file_name().to_owned())
        .collect();
    assert_eq!(on_disk, known);
}

#[test]
fn every_field_and_type_is_documented() {
    fn walk(value: &serde_json::Value, path: &str) {
        match value {
            serde_json::Value::Object(map) => {
                let is_named_type = matches!(
                    map.get("type").and_then(|t| t.as_str()),
                    Some("record" | "enum")
                );
                let is_field =
                    map.contains_key("name") && !is_named_type && map.contains_key("type");
                if is_named_type || is_field {
                    let doc = map.get("doc").and_then(|d| d.as_str()).unwrap_or_default();
                    assert!(
                        !doc.trim().is_empty(),
                        "{path}: {:?} has no doc",
                        map.get("name")
                    );
                }
                for (k, v) in map {
                    walk(v, &format!("{path}/{k}"));
                }
            }
            serde_json::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}/{i}"));
                }
            }
            _ => {}
        }
    }
    for file in SchemaFile::ALL {
        let json: serde_json::Value = serde_json::from_str(file.source()).unwrap();
        assert_eq!(json["namespace"], "io.scanstream", "{}", file.file_name());
        walk(&json, file.file_name());
    }
}
