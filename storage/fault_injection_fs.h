#ifndef BURSAR_STORAGE_FAULT_INJECTION_FS_H_
#define BURSAR_STORAGE_FAULT_INJECTION_FS_H_

// Test only: a RocksDB FileSystem over the default one that a test can
// switch to failing writes (appends and flushes: a full disk) or syncs
// (fsync errors), to prove that a failed write loses nothing acknowledged
// and leaves memory as it was. Pass env() as RocksLedgerOptions::env.
//
// Thread-safe: the switches are atomics that RocksDB's threads read on
// every file operation. The object must outlive every database opened on
// its env().

#include <atomic>
#include <memory>
#include <string>

#include "rocksdb/env.h"
#include "rocksdb/file_system.h"

namespace bursar::storage {

class FaultInjectionFs final : public rocksdb::FileSystemWrapper {
 public:
  FaultInjectionFs();

  const char* Name() const override { return "BursarFaultInjectionFs"; }

  // While set, every append and flush to a file opened for writing fails
  // with "No space left on device" (IOStatus::NoSpace).
  void FailWrites(bool fail) { fail_writes_.store(fail); }
  // While set, every Sync/Fsync/RangeSync of a file fails with an I/O error.
  void FailSyncs(bool fail) { fail_syncs_.store(fail); }

  // How many operations failed because of the switches so far.
  int failures() const { return failures_.load(); }

  // An Env whose file system is this one (for rocksdb::Options::env).
  rocksdb::Env* env() const { return env_.get(); }

  rocksdb::IOStatus NewWritableFile(
      const std::string& fname, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& fname, const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(
      const std::string& fname, const std::string& old_fname,
      const rocksdb::FileOptions& options,
      std::unique_ptr<rocksdb::FSWritableFile>* result,
      rocksdb::IODebugContext* dbg) override;

  // Used by the wrapped files.
  rocksdb::IOStatus CheckWrite();
  rocksdb::IOStatus CheckSync();

 private:
  std::atomic<bool> fail_writes_{false};
  std::atomic<bool> fail_syncs_{false};
  std::atomic<int> failures_{0};
  // Owns nothing of *this: a CompositeEnv over a shared_ptr that does not
  // delete (the test owns the FaultInjectionFs).
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_FAULT_INJECTION_FS_H_
