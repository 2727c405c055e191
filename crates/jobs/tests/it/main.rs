//! tarn-jobs' integration tests: properties of the parsers of job settings, Quartz schedules
//! and dynamic value references.

mod properties;
