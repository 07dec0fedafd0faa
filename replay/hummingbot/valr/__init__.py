"""A Hummingbot (ExchangePyBase) connector for VALR, laid out like hummingbot/connector/exchange/valr/."""
