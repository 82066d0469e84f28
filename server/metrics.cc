#include "server/metrics.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace bursar::server {
namespace {

constexpr int kSlotEmpty = 0;
constexpr int kSlotWriting = 1;
constexpr int kSlotReady = 2;

bool IsMetricNameChar(char c, bool first) {
  return absl::ascii_isalpha(c) || c == '_' || c == ':' ||
         (!first && absl::ascii_isdigit(c));
}

absl::Status CheckMetricName(absl::string_view name) {
  if (name.empty()) {
    return absl::InvalidArgumentError("metric name must not be empty");
  }
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsMetricNameChar(name[i], i == 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metric name \"", absl::CHexEscape(name),
          "\" must match [a-zA-Z_:][a-zA-Z0-9_:]* (bad character at ", i, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLabelName(absl::string_view label) {
  bool ok = !label.empty() && !absl::StartsWith(label, "__");
  for (size_t i = 0; ok && i < label.size(); ++i) {
    const char c = label[i];
    ok =
        absl::ascii_isalpha(c) || c == '_' || (i > 0 && absl::ascii_isdigit(c));
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("label name \"", absl::CHexEscape(label),
                     "\" must match [a-zA-Z_][a-zA-Z0-9_]* and not start "
                     "with \"__\""));
  }
  return absl::OkStatus();
}

absl::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kSummary:
      return "summary";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kUntyped:
      return "untyped";
  }
  return "untyped";
}

std::string EscapeHelp(absl::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void AppendSample(std::string& out, absl::string_view name,
                  absl::string_view suffix,
                  absl::Span<const std::pair<std::string, std::string>> labels,
                  double value) {
  absl::StrAppend(&out, name, suffix);
  if (!labels.empty()) {
    out += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) out += ',';
      absl::StrAppend(&out, labels[i].first, "=\"",
                      EscapeLabelValue(labels[i].second), "\"");
    }
    out += '}';
  }
  absl::StrAppend(&out, " ", FormatSampleValue(value), "\n");
}

// Bound values as the `le` label spells them.
std::string FormatBound(double bound) { return FormatSampleValue(bound); }

}  // namespace

std::string EscapeLabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  std::string text = absl::StrFormat("%.15g", value);
  if (std::strtod(text.c_str(), nullptr) != value) {
    text = absl::StrFormat("%.17g", value);
  }
  return text;
}

// --- CounterFamily ---------------------------------------------------------

CounterFamily::CounterFamily(std::vector<std::string> fixed_values,
                             size_t max_open_values)
    : fixed_values_(std::move(fixed_values)), slots_(max_open_values) {
  for (Slot& slot : slots_) {
    slot.counts =
        std::make_unique<std::atomic<uint64_t>[]>(fixed_values_.size());
  }
  overflow_ = std::make_unique<std::atomic<uint64_t>[]>(fixed_values_.size());
}

CounterFamily::Slot* CounterFamily::Find(absl::string_view value) {
  if (slots_.empty() || value.size() > kMaxOpenValueBytes) return nullptr;
  const size_t start = absl::Hash<absl::string_view>()(value) % slots_.size();
  for (size_t probe = 0; probe < slots_.size(); ++probe) {
    Slot& slot = slots_[(start + probe) % slots_.size()];
    int state = slot.state.load(std::memory_order_acquire);
    if (state == kSlotEmpty) {
      int expected = kSlotEmpty;
      if (slot.state.compare_exchange_strong(expected, kSlotWriting,
                                             std::memory_order_acq_rel)) {
        std::memcpy(slot.name.data(), value.data(), value.size());
        slot.size = static_cast<uint32_t>(value.size());
        slot.state.store(kSlotReady, std::memory_order_release);
        return &slot;
      }
      state = expected;
    }
    // Another thread is writing this slot's name: a memcpy away from ready.
    while (state == kSlotWriting) {
      std::this_thread::yield();
      state = slot.state.load(std::memory_order_acquire);
    }
    if (absl::string_view(slot.name.data(), slot.size) == value) return &slot;
  }
  return nullptr;
}

void CounterFamily::Increment(size_t fixed_index, absl::string_view open_value,
                              uint64_t n) {
  if (fixed_index >= fixed_values_.size()) return;
  Slot* slot = Find(open_value);
  std::atomic<uint64_t>* counts =
      slot != nullptr ? slot->counts.get() : overflow_.get();
  counts[fixed_index].fetch_add(n, std::memory_order_relaxed);
}

std::vector<CounterFamily::Series> CounterFamily::Snapshot() const {
  std::vector<Series> out;
  for (const Slot& slot : slots_) {
    if (slot.state.load(std::memory_order_acquire) != kSlotReady) continue;
    const std::string name(slot.name.data(), slot.size);
    for (size_t i = 0; i < fixed_values_.size(); ++i) {
      const uint64_t count = slot.counts[i].load(std::memory_order_relaxed);
      if (count > 0) out.push_back({fixed_values_[i], name, count});
    }
  }
  for (size_t i = 0; i < fixed_values_.size(); ++i) {
    const uint64_t count = overflow_[i].load(std::memory_order_relaxed);
    if (count > 0) {
      out.push_back(
          {fixed_values_[i], std::string(kOverflowLabelValue), count});
    }
  }
  return out;
}

// --- Histogram -------------------------------------------------------------

Histogram::Histogram(std::vector<double> upper_bounds_seconds)
    : upper_bounds_seconds_(std::move(upper_bounds_seconds)) {
  upper_bounds_nanos_.reserve(upper_bounds_seconds_.size());
  for (double bound : upper_bounds_seconds_) {
    upper_bounds_nanos_.push_back(
        static_cast<int64_t>(std::llround(bound * 1e9)));
  }
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(
      upper_bounds_seconds_.size() + 1);
}

void Histogram::ObserveNanos(int64_t nanos) {
  if (nanos < 0) nanos = 0;
  size_t i = 0;
  while (i < upper_bounds_nanos_.size() && nanos > upper_bounds_nanos_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(nanos), std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(upper_bounds_seconds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    out[i] = running;
  }
  return out;
}

uint64_t Histogram::Count() const { return CumulativeCounts().back(); }

double Histogram::SumSeconds() const {
  return static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
}

// --- MetricsRegistry -------------------------------------------------------

absl::Status MetricsRegistry::CheckNewName(absl::string_view name) const {
  if (absl::Status s = CheckMetricName(name); !s.ok()) return s;
  for (const auto& entry : entries_) {
    if (entry->name == name) {
      return absl::AlreadyExistsError(
          absl::StrCat("metric \"", name, "\" is already registered"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Counter*> MetricsRegistry::AddCounter(absl::string_view name,
                                                     absl::string_view help) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  auto entry = std::make_unique<Entry>();
  entry->name = std::string(name);
  entry->help = std::string(help);
  entry->type = MetricType::kCounter;
  entry->counter = std::make_unique<Counter>();
  Counter* counter = entry->counter.get();
  entries_.push_back(std::move(entry));
  return counter;
}

absl::StatusOr<CounterFamily*> MetricsRegistry::AddCounterFamily(
    absl::string_view name, absl::string_view help,
    absl::string_view fixed_label, std::vector<std::string> fixed_values,
    absl::string_view open_label, size_t max_open_values) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  if (absl::Status s = CheckLabelName(fixed_label); !s.ok()) return s;
  if (absl::Status s = CheckLabelName(open_label); !s.ok()) return s;
  if (fixed_label == open_label) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric \"", name, "\": both labels are \"", fixed_label, "\""));
  }
  if (fixed_values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metric \"", name, "\": label \"", fixed_label, "\" needs values"));
  }
  auto entry = std::make_unique<Entry>();
  entry->name = std::string(name);
  entry->help = std::string(help);
  entry->type = MetricType::kCounter;
  entry->fixed_label = std::string(fixed_label);
  entry->open_label = std::string(open_label);
  entry->family =
      std::make_unique<CounterFamily>(std::move(fixed_values), max_open_values);
  CounterFamily* family = entry->family.get();
  entries_.push_back(std::move(entry));
  return family;
}

absl::StatusOr<Histogram*> MetricsRegistry::AddHistogram(
    absl::string_view name, absl::string_view help,
    std::vector<double> upper_bounds_seconds) {
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  for (size_t i = 0; i < upper_bounds_seconds.size(); ++i) {
    const double bound = upper_bounds_seconds[i];
    if (!std::isfinite(bound) || bound < 0 ||
        (i > 0 && bound <= upper_bounds_seconds[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "histogram \"", name,
          "\": bucket bounds must be finite, non-negative and increasing; "
          "bound ",
          i, " is ", bound));
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->name = std::string(name);
  entry->help = std::string(help);
  entry->type = MetricType::kHistogram;
  entry->histogram =
      std::make_unique<Histogram>(std::move(upper_bounds_seconds));
  Histogram* histogram = entry->histogram.get();
  entries_.push_back(std::move(entry));
  return histogram;
}

absl::Status MetricsRegistry::AddCallback(absl::string_view name,
                                          absl::string_view help,
                                          MetricType type, SampleFn fn) {
  if (fn == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("metric \"", name, "\": the callback is empty"));
  }
  absl::MutexLock lock(&mu_);
  if (absl::Status s = CheckNewName(name); !s.ok()) return s;
  auto entry = std::make_unique<Entry>();
  entry->name = std::string(name);
  entry->help = std::string(help);
  entry->type = type;
  entry->fn = std::move(fn);
  entries_.push_back(std::move(entry));
  return absl::OkStatus();
}

std::string MetricsRegistry::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& entry : entries_) {
    absl::StrAppend(&out, "# HELP ", entry->name, " ", EscapeHelp(entry->help),
                    "\n# TYPE ", entry->name, " ", TypeName(entry->type), "\n");
    if (entry->counter != nullptr) {
      AppendSample(out, entry->name, "", {},
                   static_cast<double>(entry->counter->Value()));
    } else if (entry->family != nullptr) {
      for (const CounterFamily::Series& series : entry->family->Snapshot()) {
        AppendSample(out, entry->name, "",
                     {{entry->fixed_label, series.fixed_value},
                      {entry->open_label, series.open_value}},
                     static_cast<double>(series.count));
      }
    } else if (entry->histogram != nullptr) {
      const Histogram& h = *entry->histogram;
      const std::vector<uint64_t> cumulative = h.CumulativeCounts();
      for (size_t i = 0; i < cumulative.size(); ++i) {
        const std::string le = i < h.upper_bounds_seconds().size()
                                   ? FormatBound(h.upper_bounds_seconds()[i])
                                   : std::string("+Inf");
        AppendSample(out, entry->name, "_bucket", {{"le", le}},
                     static_cast<double>(cumulative[i]));
      }
      AppendSample(out, entry->name, "_sum", {}, h.SumSeconds());
      AppendSample(out, entry->name, "_count", {},
                   static_cast<double>(cumulative.back()));
    } else if (entry->fn != nullptr) {
      for (const MetricSample& sample : entry->fn()) {
        AppendSample(out, entry->name, sample.suffix, sample.labels,
                     sample.value);
      }
    }
  }
  return out;
}

}  // namespace bursar::server
