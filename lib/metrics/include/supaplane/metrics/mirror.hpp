#pragma once
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace supaplane::metrics {

/// Exports a component's own counters (plain atomics, free of Prometheus)
/// and readings as Prometheus metrics. Each `counter` / `gauge` registers
/// its family at once, so /metrics lists it from the start; `sync()` (from
/// one thread, typically a once-a-second loop) adds what each source grew
/// by since the last call and sets every gauge from its reading.
class Mirror {
 public:
  explicit Mirror(prometheus::Registry& registry) : registry_(registry) {}
  /// `source` only grows and must outlive the mirror.
  void counter(const char* name, const char* help, const std::atomic<std::uint64_t>& source);
  void gauge(const char* name, const char* help, std::function<double()> read);
  /// The same, for one labelled member of a family (several may share it).
  void counter(const std::string& name, const std::string& help, const prometheus::Labels& labels,
               const std::atomic<std::uint64_t>& source);
  void gauge(const std::string& name, const std::string& help, const prometheus::Labels& labels,
             std::function<double()> read);
  void sync();

 private:
  struct CounterEntry {
    prometheus::Counter* out;
    const std::atomic<std::uint64_t>* source;
    std::uint64_t seen;
  };
  struct GaugeEntry {
    prometheus::Gauge* out;
    std::function<double()> read;
  };
  prometheus::Registry& registry_;
  std::vector<CounterEntry> counters_;
  std::vector<GaugeEntry> gauges_;
};

}  // namespace supaplane::metrics
