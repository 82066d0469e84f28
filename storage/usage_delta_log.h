#ifndef BURSAR_STORAGE_USAGE_DELTA_LOG_H_
#define BURSAR_STORAGE_USAGE_DELTA_LOG_H_

// The sequence numbers of the usage log (storage/README.md, "usage log";
// decision 022). A settlement writes its usage as one record under the next
// sequence number, in its own batch; the usage store's folder later folds
// every record below a watermark into the rows and range-deletes them. A
// range delete is exact only if no record can still appear inside the
// range, so this class knows which sequence numbers are "in flight":
// handed out to a batch whose Write has not returned yet. Every sequence
// number below SettledBelow() is either written (and visible to any
// iterator made afterwards) or never will be.
//
// One per database (RocksDatabase owns it), shared by the ledger (which
// writes records in its settlement batches) and the usage store (which
// attaches, folds and reads). Thread-safe.

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace bursar::storage {

class UsageDeltaLog {
 public:
  // A sequence number handed out for one batch. The holder must keep it
  // until the batch's Write has returned (applied or failed); destroying it
  // ends the sequence number's flight. An empty Guard (no usage store is
  // attached, or nothing to write) holds nothing.
  class [[nodiscard]] Guard {
   public:
    Guard() = default;
    Guard(Guard&& other) noexcept
        : log_(other.log_), sequence_(other.sequence_) {
      other.log_ = nullptr;
    }
    Guard& operator=(Guard&& other) noexcept;
    Guard(const Guard&) = delete;
    Guard& operator=(const Guard&) = delete;
    ~Guard();

    bool held() const { return log_ != nullptr; }
    uint64_t sequence() const { return sequence_; }

   private:
    friend class UsageDeltaLog;
    Guard(UsageDeltaLog* log, uint64_t sequence)
        : log_(log), sequence_(sequence) {}
    UsageDeltaLog* log_ = nullptr;
    uint64_t sequence_ = 0;
  };

  UsageDeltaLog() = default;
  UsageDeltaLog(const UsageDeltaLog&) = delete;
  UsageDeltaLog& operator=(const UsageDeltaLog&) = delete;

  // The next sequence number, in flight until the Guard goes; an empty
  // Guard while no usage store is attached (the caller then writes the
  // rows directly, as before the log existed).
  Guard Begin() ABSL_LOCKS_EXCLUDED(mu_);

  // A usage store folds this log from now on; numbering resumes at
  // `next_sequence` (one past the largest record stored).
  void Attach(uint64_t next_sequence) ABSL_LOCKS_EXCLUDED(mu_);
  // The usage store is gone: Begin hands out empty Guards again.
  void Detach() ABSL_LOCKS_EXCLUDED(mu_);

  // The smallest sequence number in flight, or the next one to hand out
  // when none is: every number below it is written or abandoned. Never
  // decreases.
  uint64_t SettledBelow() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void End(uint64_t sequence) ABSL_LOCKS_EXCLUDED(mu_);

  mutable absl::Mutex mu_;
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<uint64_t> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace bursar::storage

#endif  // BURSAR_STORAGE_USAGE_DELTA_LOG_H_
