//! Avro input: one datum of the configured schema per record, plain or in the Confluent wire
//! format (magic byte 0, a big-endian 4-byte schema id, then the datum).

use super::extract::{Extract, JsonOut, PathTree};
use super::{Body, Decoded, Reuse};
use crate::fields::{FieldId, FieldRegistry, FieldValue};
use crate::reject::{RejectReason, Rejection};
use serde::de::DeserializeSeed;
use serde_avro_fast::de::DeserializerState;
use serde_avro_fast::schema::{LogicalType, RegularType, SchemaMut, SchemaNode};
use serde_avro_fast::Schema;
use std::io::BufRead;
use std::str::FromStr;

/// Avro decoder state: the writer schema and the framing rules.
#[derive(Debug)]
pub struct AvroInput {
    registry: FieldRegistry,
    tree: PathTree,
    schema: Schema,
    confluent: bool,
    accepted_ids: Vec<u32>,
    json_body: bool,
    /// The registered fields the schema makes decimals: read as decimal text, then made numbers.
    decimals: Vec<FieldId>,
}

impl AvroInput {
    /// With `json_body`, the walk also records which top-level members of its JSON form the
    /// audit snapshot may copy: not those of `redacted` fields, nor decimals (a number in the
    /// snapshot, text in the JSON form).
    pub(super) fn new(
        registry: FieldRegistry,
        schema: Schema,
        confluent: bool,
        accepted_ids: Vec<u32>,
        json_body: bool,
        redacted: &[FieldId],
    ) -> Self {
        let decimals = decimal_fields(&registry, &schema);
        let tree = if json_body {
            let copied_apart: Vec<FieldId> = redacted.iter().chain(&decimals).copied().collect();
            PathTree::with_verbatim(&registry, Some(&copied_apart))
        } else {
            PathTree::new(&registry)
        };
        AvroInput { registry, tree, schema, confluent, accepted_ids, json_body, decimals }
    }

    /// A decoder that only writes events' JSON forms (for records that show an Avro event as
    /// JSON after routing, such as resolved records). Any Confluent schema id is accepted.
    pub fn json_form_only(schema: Schema, confluent: bool) -> Self {
        AvroInput::new(FieldRegistry::default(), schema, confluent, Vec::new(), true, &[])
    }

    /// The JSON form of one datum; `None` when it does not decode, or holds a number JSON
    /// cannot carry.
    pub fn json_form(&self, payload: &[u8]) -> Option<Vec<u8>> {
        match self.decode(payload, &mut Reuse::default()).ok()?.body {
            Body::Avro(Some(json)) if !json.non_finite => Some(json.text),
            _ => None,
        }
    }

    /// Decodes one datum in a single walk against the schema: the registered fields are read
    /// (text borrowed from the record) and, for a JSON routed record, the JSON form is written.
    pub(super) fn decode<'a>(&self, payload: &'a [u8], reuse: &mut Reuse) -> Result<Decoded<'a>, Rejection> {
        let mut datum = payload;
        if self.confluent {
            datum = self.strip_confluent_header(payload)?;
        }
        let mut fields = reuse.fields.take(self.registry.paths().len());
        let mut json = self.json_body.then(|| {
            let mut text = std::mem::take(&mut reuse.json);
            text.clear();
            // About what the JSON form of a small record takes, so it rarely grows.
            text.reserve(64 + 2 * datum.len());
            JsonOut { text, non_finite: false, scalar: false }
        });
        let mut state = DeserializerState::from_slice(datum, &self.schema);
        let tree = &self.tree;
        let walked = match json.as_mut() {
            Some(out) => Extract::<true>::record(tree, &mut fields, Some(out)).deserialize(state.deserializer()),
            None => Extract::<false>::record(tree, &mut fields, None).deserialize(state.deserializer()),
        };
        walked.map_err(|e| {
            Rejection::new(RejectReason::AvroDecode, format!("does not decode with the configured schema: {e}"))
        })?;
        // Reading from a slice cannot fail.
        let left = state.into_reader().fill_buf().map_or(0, <[u8]>::len);
        if left > 0 {
            return Err(Rejection::new(
                RejectReason::AvroDecode,
                format!("{left} bytes left over after the datum: not written with the configured schema"),
            ));
        }
        // A decimal is money more often than not: the policy's bounds and the scorers read it
        // as the number its text says (the JSON form keeps the text).
        for &id in &self.decimals {
            if let FieldValue::Text(text) = fields.get(id) {
                if let Some(n) = text.parse::<f64>().ok().filter(|n| n.is_finite()) {
                    fields.set_number(id.0, n, None);
                }
            }
        }
        Ok(Decoded { fields, body: Body::Avro(json) })
    }

    fn strip_confluent_header<'a>(&self, payload: &'a [u8]) -> Result<&'a [u8], Rejection> {
        if payload.len() < 5 || payload[0] != 0 {
            return Err(Rejection::new(
                RejectReason::SchemaMismatch,
                "expected the Confluent wire format: magic byte 0 and a 4-byte schema id",
            ));
        }
        let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
        if !self.accepted_ids.is_empty() && !self.accepted_ids.contains(&id) {
            return Err(Rejection::new(
                RejectReason::SchemaMismatch,
                format!("schema id {id} is not one of the accepted ids {:?}", self.accepted_ids),
            ));
        }
        Ok(&payload[5..])
    }
}

/// The registered fields whose schema type is a decimal (or a union holding one).
fn decimal_fields(registry: &FieldRegistry, schema: &Schema) -> Vec<FieldId> {
    // The compiled schema came from this JSON, so it parses again.
    let Ok(schema) = SchemaMut::from_str(schema.json()) else { return Vec::new() };
    let paths = registry.paths().iter().enumerate();
    paths.filter(|(_, path)| is_decimal(&schema, path.segments())).map(|(i, _)| FieldId(i)).collect()
}

/// Whether the field at `segments`, reached from the root record through record fields (and
/// unions holding records), is a decimal in some branch.
fn is_decimal(schema: &SchemaMut, segments: &[String]) -> bool {
    let mut nodes = vec![schema.root()];
    for segment in segments {
        nodes = branches(schema, nodes).filter_map(|node| field(schema, node, segment)).collect();
    }
    branches(schema, nodes).any(|node| matches!(node.logical_type, Some(LogicalType::Decimal(_))))
}

/// The type of field `name` of `node`, when `node` is a record that has it.
fn field<'s>(schema: &'s SchemaMut, node: &SchemaNode, name: &str) -> Option<&'s SchemaNode> {
    match &node.type_ {
        RegularType::Record(r) => r.fields.iter().find(|f| f.name == name).map(|f| &schema[f.type_]),
        _ => None,
    }
}

/// `nodes`, with each union replaced by its branches.
fn branches<'s>(schema: &'s SchemaMut, nodes: Vec<&'s SchemaNode>) -> impl Iterator<Item = &'s SchemaNode> {
    nodes.into_iter().flat_map(move |node| match &node.type_ {
        RegularType::Union(u) => u.variants.iter().map(|&k| &schema[k]).collect::<Vec<_>>(),
        _ => vec![node],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{FieldId, FieldValue};
    use apache_avro::types::Value;

    const SCHEMA: &str = r#"{"type":"record","name":"P","fields":[
        {"name":"event_id","type":"string"},
        {"name":"amount","type":"double"},
        {"name":"country","type":["null","string"],"default":null},
        {"name":"risk","type":"float"}]}"#;

    fn input(confluent: bool, ids: Vec<u32>) -> AvroInput {
        let mut r = FieldRegistry::default();
        for p in ["event_id", "amount", "country", "risk"] {
            r.register(p).unwrap();
        }
        AvroInput::new(r, SCHEMA.parse().unwrap(), confluent, ids, true, &[])
    }

    fn datum(country: Option<&str>) -> Vec<u8> {
        let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
        let country = match country {
            Some(c) => Value::Union(1, Box::new(Value::String(c.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let v = Value::Record(vec![
            ("event_id".into(), Value::String("e7".into())),
            ("amount".into(), Value::Double(99.5)),
            ("country".into(), country),
            ("risk".into(), Value::Float(0.25)),
        ]);
        apache_avro::to_avro_datum(&schema, v).unwrap()
    }

    #[test]
    fn plain_datum_decodes() {
        let bytes = datum(Some("FR"));
        let d = input(false, vec![]).decode(&bytes, &mut Reuse::default()).unwrap();
        assert_eq!(d.fields.get(FieldId(0)), &FieldValue::Text("e7".into()));
        assert_eq!(d.fields.get(FieldId(1)), &FieldValue::Number(99.5));
        assert_eq!(d.fields.get(FieldId(2)), &FieldValue::Text("FR".into()));
        assert_eq!(d.fields.get(FieldId(3)), &FieldValue::Number(0.25));
        let bytes = datum(None);
        let d = input(false, vec![]).decode(&bytes, &mut Reuse::default()).unwrap();
        assert_eq!(d.fields.get(FieldId(2)), &FieldValue::Missing);
    }

    #[test]
    fn confluent_framing_is_checked() {
        let mut framed = vec![0, 0, 0, 0, 42];
        framed.extend(datum(Some("FR")));
        assert!(input(true, vec![]).decode(&framed, &mut Reuse::default()).is_ok());
        assert!(input(true, vec![42]).decode(&framed, &mut Reuse::default()).is_ok());
        let err = input(true, vec![7]).decode(&framed, &mut Reuse::default()).unwrap_err();
        assert_eq!(err.reason, RejectReason::SchemaMismatch);
        let mut bad_magic = framed.clone();
        bad_magic[0] = 1;
        assert_eq!(
            input(true, vec![]).decode(&bad_magic, &mut Reuse::default()).unwrap_err().reason,
            RejectReason::SchemaMismatch
        );
        assert_eq!(
            input(true, vec![]).decode(&[0, 1], &mut Reuse::default()).unwrap_err().reason,
            RejectReason::SchemaMismatch
        );
    }

    #[test]
    fn mismatched_bytes_are_rejected() {
        let err = input(false, vec![]).decode(b"{\"event_id\":\"x\"}", &mut Reuse::default()).unwrap_err();
        assert_eq!(err.reason, RejectReason::AvroDecode);
        let mut long = datum(None);
        long.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            input(false, vec![]).decode(&long, &mut Reuse::default()).unwrap_err().reason,
            RejectReason::AvroDecode
        );
    }

    const RICH: &str = r#"{"type":"record","name":"Rich","fields":[
        {"name":"id","type":"string"},
        {"name":"n","type":"int"},
        {"name":"big","type":["null","long"]},
        {"name":"ok","type":"boolean"},
        {"name":"ratio","type":"float"},
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CARD","WIRE"]}},
        {"name":"raw","type":"bytes"},
        {"name":"tag","type":{"type":"fixed","name":"Tag","size":2}},
        {"name":"card","type":{"type":"record","name":"Card","fields":[
            {"name":"country","type":"string"},{"name":"bin","type":["null","string"]}]}},
        {"name":"attrs","type":{"type":"map","values":"double"}},
        {"name":"lines","type":{"type":"array","items":"Card"}}]}"#;

    fn rich(note: &str) -> Vec<u8> {
        let card = |country: &str, bin: Option<&str>| {
            Value::Record(vec![
                ("country".into(), Value::String(country.into())),
                (
                    "bin".into(),
                    match bin {
                        Some(b) => Value::Union(1, Box::new(Value::String(b.into()))),
                        None => Value::Union(0, Box::new(Value::Null)),
                    },
                ),
            ])
        };
        let v = Value::Record(vec![
            ("id".into(), Value::String(note.into())),
            ("n".into(), Value::Int(-7)),
            ("big".into(), Value::Union(1, Box::new(Value::Long(1 << 40)))),
            ("ok".into(), Value::Boolean(true)),
            ("ratio".into(), Value::Float(0.5)),
            ("at".into(), Value::TimestampMillis(1_700_000_000_000)),
            ("kind".into(), Value::Enum(1, "WIRE".into())),
            ("raw".into(), Value::Bytes(vec![0, 255, 34])),
            ("tag".into(), Value::Fixed(2, vec![9, 10])),
            ("card".into(), card("DE", Some("4111"))),
            (
                "attrs".into(),
                Value::Map(
                    [("velocity".to_owned(), Value::Double(2.25)), ("a\"b".to_owned(), Value::Double(-1.0))].into(),
                ),
            ),
            ("lines".into(), Value::Array(vec![card("FR", None), card("US", Some("5500"))])),
        ]);
        apache_avro::to_avro_datum(&apache_avro::Schema::parse_str(RICH).unwrap(), v).unwrap()
    }

    /// The JSON form is apache_avro's JSON form of the same datum (as a value: key order aside).
    #[test]
    fn json_form_matches_apache_avro() {
        let schema = apache_avro::Schema::parse_str(RICH).unwrap();
        let input = AvroInput::json_form_only(RICH.parse().unwrap(), false);
        for note in ["plain", "quote \" backslash \\ newline \n tab \t", "unicode é 😀 \u{1}"] {
            let bytes = rich(note);
            let ours: serde_json::Value = serde_json::from_slice(&input.json_form(&bytes).unwrap()).unwrap();
            let reference =
                serde_json::Value::try_from(apache_avro::from_avro_datum(&schema, &mut &bytes[..], None).unwrap())
                    .unwrap();
            assert_eq!(ours, reference, "{note:?}");
        }
    }

    #[test]
    fn fields_are_read_at_any_depth_while_the_json_form_is_written() {
        let mut r = FieldRegistry::default();
        let paths = ["card.country", "card.bin", "kind", "attrs.velocity", "lines", "big", "raw", "id", "absent.x"];
        for p in paths {
            r.register(p).unwrap();
        }
        let input = AvroInput::new(r, RICH.parse().unwrap(), false, Vec::new(), true, &[]);
        let bytes = rich("e1");
        let d = input.decode(&bytes, &mut Reuse::default()).unwrap();
        let get = |p: &str| d.fields.get(FieldId(paths.iter().position(|x| *x == p).unwrap())).clone();
        assert_eq!(get("card.country"), FieldValue::Text("DE".into()));
        assert_eq!(get("card.bin"), FieldValue::Text("4111".into()));
        assert_eq!(get("kind"), FieldValue::Text("WIRE".into()));
        assert_eq!(get("attrs.velocity"), FieldValue::Number(2.25));
        assert_eq!(get("lines"), FieldValue::Other);
        assert_eq!(get("big"), FieldValue::Number((1u64 << 40) as f64));
        assert_eq!(get("raw"), FieldValue::Other);
        assert_eq!(get("absent.x"), FieldValue::Missing);
        // Strings are borrowed from the record, not copied.
        assert!(matches!(get("id"), FieldValue::Text(std::borrow::Cow::Borrowed("e1"))));
        assert!(matches!(d.body, Body::Avro(Some(ref j)) if !j.non_finite && j.text.starts_with(b"{\"id\":\"e1\"")));
    }

    #[test]
    fn the_json_form_is_written_only_when_asked_and_non_finite_numbers_are_flagged() {
        let mut r = FieldRegistry::default();
        r.register("amount").unwrap();
        let without = AvroInput::new(r, SCHEMA.parse().unwrap(), false, Vec::new(), false, &[]);
        assert!(matches!(without.decode(&datum(None), &mut Reuse::default()).unwrap().body, Body::Avro(None)));

        let schema = apache_avro::Schema::parse_str(SCHEMA).unwrap();
        let nan = Value::Record(vec![
            ("event_id".into(), Value::String("e8".into())),
            ("amount".into(), Value::Double(f64::INFINITY)),
            ("country".into(), Value::Union(0, Box::new(Value::Null))),
            ("risk".into(), Value::Float(f32::NAN)),
        ]);
        let bytes = apache_avro::to_avro_datum(&schema, nan).unwrap();
        let d = input(false, vec![]).decode(&bytes, &mut Reuse::default()).unwrap();
        assert_eq!(d.fields.get(FieldId(1)), &FieldValue::Number(f64::INFINITY));
        assert!(matches!(d.body, Body::Avro(Some(ref j)) if j.non_finite));
        assert_eq!(AvroInput::json_form_only(SCHEMA.parse().unwrap(), false).json_form(&bytes), None);
    }

    #[test]
    fn decimals_are_numbers_to_the_policy_and_decimal_text_in_the_json_form() {
        const PRICED: &str = r#"{"type":"record","name":"Priced","fields":[
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
            {"name":"fee","type":["null",{"type":"fixed","name":"Fee","size":4,"logicalType":"decimal","precision":9,"scale":3}]},
            {"name":"card","type":["null",{"type":"record","name":"Card","fields":[
                {"name":"limit","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":0}},
                {"name":"code","type":"string"}]}]},
            {"name":"note","type":"string"}]}"#;
        let mut r = FieldRegistry::default();
        for p in ["price", "fee", "card.limit", "card.code", "note"] {
            r.register(p).unwrap();
        }
        let input = AvroInput::new(r, PRICED.parse().unwrap(), false, Vec::new(), true, &[]);
        assert_eq!(input.decimals, [FieldId(0), FieldId(1), FieldId(2)]);
        let schema = apache_avro::Schema::parse_str(PRICED).unwrap();
        let datum = apache_avro::to_avro_datum(
            &schema,
            Value::Record(vec![
                ("price".into(), Value::Decimal(apache_avro::Decimal::from([0x04, 0xd2]))),
                (
                    "fee".into(),
                    Value::Union(1, Box::new(Value::Decimal(apache_avro::Decimal::from((-250i32).to_be_bytes())))),
                ),
                (
                    "card".into(),
                    Value::Union(
                        1,
                        Box::new(Value::Record(vec![
                            ("limit".into(), Value::Decimal(apache_avro::Decimal::from([0x27, 0x10]))),
                            ("code".into(), Value::String("7".into())),
                        ])),
                    ),
                ),
                // Text that reads as a number stays text: only the schema makes a decimal.
                ("note".into(), Value::String("12.5".into())),
            ]),
        )
        .unwrap();
        let d = input.decode(&datum, &mut Reuse::default()).unwrap();
        let get = |i| d.fields.get(FieldId(i)).clone();
        assert_eq!(get(0), FieldValue::Number(12.34));
        assert_eq!(get(1), FieldValue::Number(-0.25));
        assert_eq!(get(2), FieldValue::Number(10_000.0));
        assert_eq!(get(3), FieldValue::Text("7".into()));
        assert_eq!(get(4), FieldValue::Text("12.5".into()));
        assert!(
            matches!(d.body, Body::Avro(Some(ref j)) if j.text == br#"{"price":"12.34","fee":"-0.250","card":{"limit":"10000","code":"7"},"note":"12.5"}"#),
            "{:?}",
            d.body
        );
        // Absent (the null branch): still missing, not a number.
        let none = apache_avro::to_avro_datum(
            &schema,
            Value::Record(vec![
                ("price".into(), Value::Decimal(apache_avro::Decimal::from([0x01]))),
                ("fee".into(), Value::Union(0, Box::new(Value::Null))),
                ("card".into(), Value::Union(0, Box::new(Value::Null))),
                ("note".into(), Value::String(String::new())),
            ]),
        )
        .unwrap();
        let d = input.decode(&none, &mut Reuse::default()).unwrap();
        assert_eq!(d.fields.get(FieldId(0)), &FieldValue::Number(0.01));
        assert!(!matches!(d.fields.get(FieldId(1)), FieldValue::Number(_)));
        assert_eq!(d.fields.get(FieldId(2)), &FieldValue::Missing);
    }
}
