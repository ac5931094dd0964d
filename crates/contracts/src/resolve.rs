//! Avro schema resolution (writer schema → reader schema) that follows the Avro specification
//! for unions: a writer's union branch is matched to the reader's branch *of the same name*.
//!
//! apache-avro's `Value::resolve` picks the first reader branch the value happens to fit, which
//! for unions of records means by shape: an evolved `ScanStarted {scanner_id}` could decode as a
//! `ScanCancelled {reason = default}`. Records, unions, arrays and maps are walked here; leaves are
//! left to apache-avro (promotions, enum symbols, logical types).

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, ResolvedSchema, SchemaKind};
use apache_avro::types::Value;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("schema could not be indexed: {0}")]
    Names(#[source] apache_avro::Error),
    #[error("unknown named type {0} in schema")]
    UnknownName(String),
    #[error("reader field {0} is missing from the writer's record and has no default")]
    MissingField(String),
    #[error("no reader union branch matches writer branch {0}")]
    NoUnionBranch(String),
    #[error("union value branch {index} is out of range for the writer schema")]
    BadUnionIndex { index: u32 },
    #[error("value does not match the writer schema at {0}")]
    Shape(String),
    #[error("could not resolve a value against the reader schema: {0}")]
    Leaf(#[source] apache_avro::Error),
}

/// Resolves `value`, decoded with `writer`, into the shape of `reader`.
pub fn resolve(value: Value, writer: &Schema, reader: &Schema) -> Result<Value, ResolveError> {
    let writer_names = ResolvedSchema::try_from(writer).map_err(ResolveError::Names)?;
    let reader_names = ResolvedSchema::try_from(reader).map_err(ResolveError::Names)?;
    Resolver {
        writer_names: writer_names.get_names(),
        reader_names: reader_names.get_names(),
    }
    .resolve(value, writer, reader)
}

struct Resolver<'a> {
    writer_names: &'a HashMap<Name, &'a Schema>,
    reader_names: &'a HashMap<Name, &'a Schema>,
}

fn deref<'a>(
    schema: &'a Schema,
    names: &'a HashMap<Name, &'a Schema>,
) -> Result<&'a Schema, ResolveError> {
    match schema {
        Schema::Ref { name } => names
            .get(name)
            .copied()
            .ok_or_else(|| ResolveError::UnknownName(name.fullname(None))),
        other => Ok(other),
    }
}

fn describe(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => format!("{:?}", SchemaKind::from(schema)),
    }
}

impl Resolver<'_> {
    fn resolve(
        &self,
        value: Value,
        writer: &Schema,
        reader: &Schema,
    ) -> Result<Value, ResolveError> {
        let writer = deref(writer, self.writer_names)?;
        let reader = deref(reader, self.reader_names)?;
        match (writer, reader, value) {
            (Schema::Union(wu), _, Value::Union(index, inner)) => {
                let branch = wu
                    .variants()
                    .get(index as usize)
                    .ok_or(ResolveError::BadUnionIndex { index })?;
                self.resolve(*inner, branch, reader)
            }
            (_, Schema::Union(ru), value) => {
                let (index, branch) = self.matching_branch(writer, ru.variants())?;
                let inner = self.resolve(value, writer, branch)?;
                let index = u32::try_from(index)
                    .map_err(|_| ResolveError::NoUnionBranch(describe(writer)))?;
                Ok(Value::Union(index, Box::new(inner)))
            }
            (Schema::Record(wr), Schema::Record(rr), Value::Record(fields)) => {
                let mut by_name: HashMap<String, Value> = fields.into_iter().collect();
                let mut out = Vec::with_capacity(rr.fields.len());
                for field in &rr.fields {
                    let written = std::iter::once(&field.name)
                        .chain(field.aliases.iter())
                        .find_map(|n| {
                            let wf = wr.fields.iter().find(|wf| &wf.name == n)?;
                            Some((wf, by_name.remove(&wf.name)?))
                        });
                    let resolved = match written {
                        Some((wf, v)) => self.resolve(v, &wf.schema, &field.schema)?,
                        None => {
                            let default = field
                                .default
                                .clone()
                                .ok_or_else(|| ResolveError::MissingField(field.name.clone()))?;
                            Value::try_from(default)
                                .map_err(ResolveError::Leaf)?
                                .resolve_with_names(&field.schema, self.reader_names)
                                .map_err(ResolveError::Leaf)?
                        }
                    };
                    out.push((field.name.clone(), resolved));
                }
                Ok(Value::Record(out))
            }
            (Schema::Array(wa), Schema::Array(ra), Value::Array(items)) => Ok(Value::Array(
                items
                    .into_iter()
                    .map(|item| self.resolve(item, &wa.items, &ra.items))
                    .collect::<Result<_, _>>()?,
            )),
            (Schema::Map(wm), Schema::Map(rm), Value::Map(entries)) => Ok(Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| Ok((k, self.resolve(v, &wm.types, &rm.types)?)))
                    .collect::<Result<_, ResolveError>>()?,
            )),
            (Schema::Record(_) | Schema::Array(_) | Schema::Map(_), _, _) => {
                Err(ResolveError::Shape(describe(writer)))
            }
            (_, _, leaf) => leaf
                .resolve_with_names(reader, self.reader_names)
                .map_err(ResolveError::Leaf),
        }
    }

    /// The reader branch for a writer schema: the same named type, else the same kind of
    /// unnamed schema (the spec's "first schema in the reader's union that matches").
    fn matching_branch<'s>(
        &self,
        writer: &Schema,
        branches: &'s [Schema],
    ) -> Result<(usize, &'s Schema), ResolveError> {
        let writer_kind = SchemaKind::from(writer);
        for (index, branch) in branches.iter().enumerate() {
            let same = match (writer.name(), branch.name()) {
                (Some(w), Some(r)) => w == r,
                (None, None) => SchemaKind::from(branch) == writer_kind,
                _ => false,
            };
            if same {
                return Ok((index, branch));
            }
        }
        Err(ResolveError::NoUnionBranch(describe(writer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).unwrap_or_else(|e| panic!("test schema does not parse: {e}"))
    }

    const READER: &str = r#"{"type": "record", "name": "E", "fields": [
        {"name": "payload", "type": [
            {"type": "record", "name": "Started", "fields": [{"name": "scanner_id", "type": "string"}]},
            {"type": "record", "name": "Cancelled", "fields": [{"name": "reason", "type": ["null", "string"], "default": null}]}
        ]}
    ]}"#;

    #[test]
    fn union_branches_are_matched_by_name_not_by_shape() {
        // The writer put Cancelled first and gave Started a new field: shape-based resolution
        // would take the writer's Started for the reader's Cancelled (its only field defaults).
        let writer = parse(
            r#"{"type": "record", "name": "E", "fields": [
            {"name": "payload", "type": [
                {"type": "record", "name": "Cancelled", "fields": [{"name": "reason", "type": ["null", "string"], "default": null}]},
                {"type": "record", "name": "Started", "fields": [{"name": "scanner_id", "type": "string"}, {"name": "host", "type": "string", "default": ""}]}
            ]}
        ]}"#,
        );
        let reader = parse(READER);
        let value = Value::Record(vec![(
            "payload".into(),
            Value::Union(
                1,
                Box::new(Value::Record(vec![
                    ("scanner_id".into(), Value::String("s-1".into())),
                    ("host".into(), Value::String("h".into())),
                ])),
            ),
        )]);
        let resolved = resolve(value, &writer, &reader).unwrap();
        let expected = Value::Record(vec![(
            "payload".into(),
            Value::Union(
                0,
                Box::new(Value::Record(vec![(
                    "scanner_id".into(),
                    Value::String("s-1".into()),
                )])),
            ),
        )]);
        assert_eq!(resolved, expected);
    }

    #[test]
    fn missing_reader_fields_take_their_defaults_and_fail_without_one() {
        let writer =
            parse(r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}"#);
        let reader = parse(
            r#"{"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "long"},
            {"name": "b", "type": ["null", "string"], "default": null}]}"#,
        );
        let value = Value::Record(vec![("a".into(), Value::Int(7))]);
        let resolved = resolve(value.clone(), &writer, &reader).unwrap();
        assert_eq!(
            resolved,
            Value::Record(vec![
                ("a".into(), Value::Long(7)),
                ("b".into(), Value::Union(0, Box::new(Value::Null))),
            ])
        );
        let strict = parse(
            r#"{"type": "record", "name": "R", "fields": [
            {"name": "a", "type": "int"}, {"name": "c", "type": "string"}]}"#,
        );
        assert!(matches!(
            resolve(value, &writer, &strict),
            Err(ResolveError::MissingField(f)) if f == "c"
        ));
    }
}
