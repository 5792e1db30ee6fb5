//! Integration tests of autodeploy-cache.

mod support;
