package pgstore

// Migrations are the schema versions, for tests of a migration from an older one.
var Migrations = migrations

// MigrationLock is the advisory lock key under which the schema is migrated.
const MigrationLock = migrationLock

// Reset closes the pool's connections, as a restart of the server leaves them.
func (s *Store) Reset() { s.pool.Reset() }

// WaitSweep waits for the deletion of expired rows under way, if any.
func (s *Store) WaitSweep() { s.sweeps.Wait() }
