//! PLACEHOLDER
pub struct RabbitBroker;
