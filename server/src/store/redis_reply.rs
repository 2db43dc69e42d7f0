//! Reading Lua script replies: the few conversions both Redis adapters need,
//! with a reply of the wrong shape reported as corrupt data.

use redis::Value;

use super::{StoreError, StoreResult};

pub fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub fn int(v: &Value) -> StoreResult<i64> {
    redis::from_redis_value_ref::<i64>(v).map_err(corrupt)
}

pub fn text(v: &Value) -> StoreResult<String> {
    redis::from_redis_value_ref::<String>(v).map_err(corrupt)
}
