//! The state every route gets, assembled in `app.rs`. Handlers take only
//! the parts they use (`State<Arc<QueueService>>`, …) through `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::auth::Auth;
use crate::config::ServerConfig;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::services::catalog::Catalog;
use crate::services::coupons::CouponService;
use crate::services::queue::QueueService;
use crate::services::seats::SeatService;
use crate::services::settings::SettingsService;
use crate::ws::Sockets;
use crate::ws::hub::Hub;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub cfg: Arc<ServerConfig>,
    pub auth: Arc<Auth>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    pub catalog: Arc<Catalog>,
    pub queue: Arc<QueueService>,
    pub seats: Arc<SeatService>,
    pub coupons: Arc<CouponService>,
    pub orders: Arc<crate::services::orders::OrderService>,
    pub settlement: Arc<crate::services::settlement::SettlementService>,
    pub venues: Arc<crate::services::venues::VenueService>,
    pub settings: Arc<SettingsService>,
    pub sockets: Arc<Sockets>,
    pub hub: Arc<Hub>,
}
