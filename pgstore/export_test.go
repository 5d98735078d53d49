package pgstore

// Migrations are the schema versions, for tests of a migration from an older one.
var Migrations = migrations

// MigrationLock is the advisory lock key under which the schema is migrated.
const MigrationLock = migrationLock
