//! tarn-artifacts' integration tests: properties of the artifact paths clients send.

mod properties;
