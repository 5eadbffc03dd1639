package sqlite

// ReadPoolSize exposes readPoolSize to the tests of package sqlite_test.
var ReadPoolSize = readPoolSize
