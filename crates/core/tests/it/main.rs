//! tarn-core's integration tests: properties of the parsers of user input.

mod properties;
