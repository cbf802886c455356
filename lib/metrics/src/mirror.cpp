#include "supaplane/metrics/mirror.hpp"

namespace supaplane::metrics {

void Mirror::counter(const char* name, const char* help, const std::atomic<std::uint64_t>& source) {
  counter(std::string(name), std::string(help), {}, source);
}

void Mirror::gauge(const char* name, const char* help, std::function<double()> read) {
  gauge(std::string(name), std::string(help), {}, std::move(read));
}

void Mirror::counter(const std::string& name, const std::string& help,
                     const prometheus::Labels& labels, const std::atomic<std::uint64_t>& source) {
  auto& c = prometheus::BuildCounter().Name(name).Help(help).Register(registry_).Add(labels);
  counters_.push_back({&c, &source, 0});
}

void Mirror::gauge(const std::string& name, const std::string& help,
                   const prometheus::Labels& labels, std::function<double()> read) {
  auto& g = prometheus::BuildGauge().Name(name).Help(help).Register(registry_).Add(labels);
  gauges_.push_back({&g, std::move(read)});
}

void Mirror::sync() {
  for (auto& e : counters_) {
    const std::uint64_t now = e.source->load();
    if (now > e.seen) e.out->Increment(static_cast<double>(now - e.seen));
    e.seen = now;
  }
  for (auto& e : gauges_) e.out->Set(e.read());
}

}  // namespace supaplane::metrics
