//! A reviewer sees an Avro event as the router writes it: the gateway's JSON form of an Avro
//! event (read from an Avro routed record) equals the one the router embeds in a JSON routed
//! record, decimals included.

use apache_avro::types::Value as AvroValue;
use apache_avro::{Decimal, Schema};
use std::borrow::Cow;
use tollgate_gateway::records::RecordDecoder;
use tollgate_router::decode::AvroInput;
use tollgate_schemas::{AvroBytes, Contribution, EventFormat, Route, RoutedRecord};

const SCHEMA: &str = r#"{"type":"record","name":"Payment","namespace":"io.example","fields":[
    {"name":"event_id","type":"string"},
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
    {"name":"fee","type":["null",{"type":"fixed","name":"Money","size":8,"logicalType":"decimal","precision":18,"scale":4}]},
    {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
        {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":8,"scale":1}},
        {"name":"sku","type":"string"}]}}},
    {"name":"refund","type":["null","Line"]},
    {"name":"taxes","type":{"type":"map","values":{"type":"bytes","logicalType":"decimal","precision":18,"scale":4}}},
    {"name":"raw","type":"bytes"},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["CARD","BANK"]}},
    {"name":"note","type":["null","string"]}]}"#;

fn decimal(unscaled: i64) -> AvroValue {
    AvroValue::Decimal(Decimal::from(unscaled.to_be_bytes()))
}

fn line(price: i64, sku: &str) -> AvroValue {
    AvroValue::Record(vec![("price".into(), decimal(price)), ("sku".into(), AvroValue::String(sku.into()))])
}

fn payment(n: i64) -> AvroValue {
    AvroValue::Record(vec![
        ("event_id".into(), AvroValue::String(format!("pay-{n}"))),
        ("amount".into(), decimal(1234 * n - 5000)),
        (
            "fee".into(),
            if n % 2 == 0 {
                AvroValue::Union(0, Box::new(AvroValue::Null))
            } else {
                AvroValue::Union(1, Box::new(decimal(-25 * n)))
            },
        ),
        ("lines".into(), AvroValue::Array((0..n % 3).map(|i| line(i * 7 - 3, "sku")).collect())),
        ("refund".into(), AvroValue::Union(1, Box::new(line(-n, "back")))),
        ("taxes".into(), AvroValue::Map([("vat".to_owned(), decimal(19 * n))].into_iter().collect())),
        ("raw".into(), AvroValue::Bytes(vec![0, 255, n as u8])),
        ("kind".into(), AvroValue::Enum((n % 2) as u32, if n % 2 == 0 { "CARD" } else { "BANK" }.into())),
        ("note".into(), AvroValue::Union(1, Box::new(AvroValue::String(format!("quote \" é {n}"))))),
    ])
}

#[test]
fn the_gateway_shows_an_avro_event_as_the_router_writes_it() {
    let schema = Schema::parse_str(SCHEMA).unwrap();
    let path = std::env::temp_dir().join(format!("tollgate-avro-form-{}.avsc", std::process::id()));
    std::fs::write(&path, SCHEMA).unwrap();
    let gateway = RecordDecoder::new(Some(&path), false).unwrap();
    let router = AvroInput::json_form_only(SCHEMA.parse().unwrap(), false);
    for n in 0..6 {
        let datum = apache_avro::to_avro_datum(&schema, payment(n)).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&router.json_form(&datum).unwrap()).unwrap();
        let record = RoutedRecord {
            event_id: format!("pay-{n}").into(),
            route: Route::AsyncReview,
            rule: "review".into(),
            guardrail: false,
            risk_score: 0.7,
            confidence: 0.6,
            model_version: "m".into(),
            policy_version: "p".into(),
            explanation: vec![Contribution { feature: "amount".into(), contribution: 0.5 }],
            routed_at: 1,
            sla_deadline: Some(2),
            event_format: EventFormat::Avro,
            event: AvroBytes(Cow::Borrowed(&datum[..])),
        };
        let mut bytes = Vec::new();
        record.write_avro(&mut bytes).unwrap();
        let shown = serde_json::Value::Object(gateway.routed(&bytes).unwrap().event);
        assert_eq!(shown, written, "event {n}");
        assert!(shown["amount"].is_string(), "{shown}");
    }
    std::fs::remove_file(&path).ok();
}
