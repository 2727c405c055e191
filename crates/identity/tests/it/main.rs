//! tarn-identity's integration tests: properties of the SCIM filter and PATCH parsers.

mod properties;
