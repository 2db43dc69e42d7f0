//! Arbitrary JSON for the property tests of both fuzzers: the socket
//! decoder's (`ws/fuzz.rs`, a unit test) and the REST API's
//! (`tests/fuzz.rs`, which includes this file by path). Uses no item of
//! the crate, so it compiles in both.

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use serde_json::Value;

/// How deep and wide the values grow (proptest's `prop_recursive` knobs).
pub struct Shape {
    pub depth: u32,
    pub size: u32,
    pub width: usize,
}

/// Any JSON value: scalars (NaN and infinities become null), plus `extra`
/// leaves when given, nested in arrays and in objects keyed by `key`.
pub fn arb_json(
    shape: Shape,
    key: BoxedStrategy<String>,
    extra: Option<BoxedStrategy<Value>>,
) -> impl Strategy<Value = Value> {
    let mut leaves = vec![
        Just(Value::Null).boxed(),
        any::<bool>().prop_map(Value::Bool).boxed(),
        any::<i64>().prop_map(Value::from).boxed(),
        any::<u64>().prop_map(Value::from).boxed(),
        any::<f64>().prop_map(Value::from).boxed(),
        any::<String>().prop_map(Value::String).boxed(),
    ];
    leaves.extend(extra);
    let width = shape.width;
    Union::new(leaves).prop_recursive(shape.depth, shape.size, width as u32, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..width).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..width)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
