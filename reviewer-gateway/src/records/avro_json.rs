//! The JSON form of an Avro event, as the router writes it into a JSON routed record: unions as
//! their value, enums and decimals as strings, bytes and fixed as arrays of byte values.
//!
//! `apache_avro`'s own conversion gives the same form except for decimals, which it turns into
//! their bytes: a reviewer would see an amount of `12.34` as `[4, 210]`. So the value is walked
//! with its schema, decimals are written as decimal text with the schema's scale (`"12.34"`,
//! as the router's reader writes them), and everything else is left to `apache_avro`.

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// An event schema with its named types, to follow references while walking a value.
#[derive(Debug)]
pub struct EventSchema {
    schema: Schema,
    names: HashMap<Name, Schema>,
}

impl EventSchema {
    /// A schema whose references do not resolve is kept as it is: `apache_avro` refuses its
    /// data when it reads them, so no value of it reaches the walk.
    pub fn new(schema: Schema) -> EventSchema {
        let names = ResolvedSchema::try_from(&schema)
            .map(|resolved| {
                resolved.get_names().iter().map(|(name, schema)| (name.clone(), (*schema).clone())).collect()
            })
            .unwrap_or_default();
        EventSchema { schema, names }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The JSON form of `value`, a datum of this schema.
    pub fn json_form(&self, value: AvroValue) -> Result<Value, String> {
        self.walk(value, &self.schema)
    }

    fn walk(&self, value: AvroValue, schema: &Schema) -> Result<Value, String> {
        let schema = match schema {
            Schema::Ref { name } => {
                self.names.get(name).ok_or_else(|| format!("the schema refers to an unknown type {name}"))?
            }
            other => other,
        };
        match (value, schema) {
            (AvroValue::Decimal(d), Schema::Decimal(s)) => {
                let bytes = <Vec<u8>>::try_from(&d).map_err(|e| format!("a decimal: {e}"))?;
                decimal_text(&bytes, s.scale).map(Value::String)
            }
            (AvroValue::Union(i, inner), Schema::Union(u)) => match u.variants().get(i as usize) {
                Some(variant) => self.walk(*inner, variant),
                None => Err(format!("a union value names branch {i}, which the schema does not have")),
            },
            (AvroValue::Record(fields), Schema::Record(r)) => {
                let mut object = Map::new();
                for (name, value) in fields {
                    let field = r.lookup.get(&name).and_then(|&at| r.fields.get(at));
                    let json = match field {
                        Some(field) => self.walk(value, &field.schema)?,
                        None => plain(value)?,
                    };
                    object.insert(name, json);
                }
                Ok(Value::Object(object))
            }
            (AvroValue::Array(items), Schema::Array(a)) => {
                items.into_iter().map(|v| self.walk(v, &a.items)).collect::<Result<_, _>>().map(Value::Array)
            }
            (AvroValue::Map(entries), Schema::Map(m)) => entries
                .into_iter()
                .map(|(k, v)| self.walk(v, &m.types).map(|j| (k, j)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            (value, _) => plain(value),
        }
    }
}

/// `apache_avro`'s JSON form of a value that holds no decimal.
fn plain(value: AvroValue) -> Result<Value, String> {
    Value::try_from(value).map_err(|e| e.to_string())
}

/// The decimal text of a big-endian two's-complement unscaled value with `scale` digits after
/// the point: `[4, 210]` at scale 2 is `12.34`, `[255]` at scale 2 is `-0.01`. The scale's
/// digits are all written (`12.30`), as the router writes them.
fn decimal_text(bytes: &[u8], scale: usize) -> Result<String, String> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let sign_byte = if negative { 0xff } else { 0 };
    // Bytes beyond 16 can only be sign extension for a value that fits 128 bits.
    let cut = bytes.len().saturating_sub(16);
    if bytes[..cut].iter().any(|&b| b != sign_byte) {
        return Err(format!("a decimal of {} bytes does not fit 128 bits", bytes.len()));
    }
    let mut word = [sign_byte; 16];
    word[16 - (bytes.len() - cut)..].copy_from_slice(&bytes[cut..]);
    let unscaled = i128::from_be_bytes(word);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return Ok(format!("{sign}{digits}"));
    }
    // At least one digit before the point.
    let digits = format!("{}{digits}", "0".repeat((scale + 1).saturating_sub(digits.len())));
    let (whole, fraction) = digits.split_at(digits.len() - scale);
    Ok(format!("{sign}{whole}.{fraction}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Decimal;

    #[test]
    fn decimal_text_keeps_the_scale_and_the_sign() {
        assert_eq!(decimal_text(&[0x04, 0xd2], 2).unwrap(), "12.34");
        assert_eq!(decimal_text(&[0x04, 0xce], 2).unwrap(), "12.30");
        assert_eq!(decimal_text(&[0x05], 2).unwrap(), "0.05");
        assert_eq!(decimal_text(&[0xff], 2).unwrap(), "-0.01");
        assert_eq!(decimal_text(&[0xfb, 0x2e], 2).unwrap(), "-12.34");
        assert_eq!(decimal_text(&[0x00], 3).unwrap(), "0.000");
        assert_eq!(decimal_text(&[0x04, 0xd2], 0).unwrap(), "1234");
        assert_eq!(decimal_text(&[], 1).unwrap(), "0.0");
        // A fixed(20) holding a small value is sign extension past 16 bytes.
        let mut wide = vec![0xff; 20];
        wide[19] = 0x9c;
        assert_eq!(decimal_text(&wide, 1).unwrap(), "-10.0");
        let mut too_wide = vec![0; 20];
        too_wide[0] = 1;
        assert!(decimal_text(&too_wide, 1).unwrap_err().contains("128 bits"));
        // The largest and smallest 128-bit values.
        let max = i128::MAX.to_be_bytes();
        assert_eq!(decimal_text(&max, 38).unwrap(), format!("1.{}", &i128::MAX.to_string()[1..]));
        let min = i128::MIN.to_be_bytes();
        assert_eq!(decimal_text(&min, 0).unwrap(), i128::MIN.to_string());
    }

    const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"io.example","fields":[
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
            {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":8,"scale":1}}]}}},
        {"name":"refund","type":["null","Line"]},
        {"name":"fee","type":["null",{"type":"fixed","name":"Fee","size":8,"logicalType":"decimal","precision":18,"scale":4}]},
        {"name":"taxes","type":{"type":"map","values":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}}},
        {"name":"raw","type":"bytes"}]}"#;

    fn decimal(unscaled: i64) -> AvroValue {
        AvroValue::Decimal(Decimal::from(unscaled.to_be_bytes()))
    }

    #[test]
    fn decimals_anywhere_are_text_and_the_rest_is_apache_avros_form() {
        let schema = EventSchema::new(Schema::parse_str(ORDER).unwrap());
        let line = |price| AvroValue::Record(vec![("price".into(), decimal(price))]);
        let value = AvroValue::Record(vec![
            ("lines".into(), AvroValue::Array(vec![line(123), line(-7)])),
            // A reference to a named record: its decimal is found through the name.
            ("refund".into(), AvroValue::Union(1, Box::new(line(-5)))),
            ("fee".into(), AvroValue::Union(1, Box::new(decimal(-2_500)))),
            ("taxes".into(), AvroValue::Map([("vat".to_owned(), decimal(19_000))].into_iter().collect())),
            ("raw".into(), AvroValue::Bytes(vec![1, 2])),
        ]);
        // Through a datum, as the gateway reads it.
        let datum = apache_avro::to_avro_datum(schema.schema(), value).unwrap();
        let read = apache_avro::from_avro_datum(schema.schema(), &mut &datum[..], None).unwrap();
        assert_eq!(
            schema.json_form(read).unwrap(),
            serde_json::json!({
                "lines": [{"price": "12.3"}, {"price": "-0.7"}],
                "refund": {"price": "-0.5"},
                "fee": "-0.2500",
                "taxes": {"vat": "1.9000"},
                "raw": [1, 2]
            })
        );
    }
}
