package pgstore

// Migrations are the schema versions, for tests of a migration from an older one.
var Migrations = migrations
