#include "supaplane/event_store/kv.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>

#include "supaplane/logging/logging.hpp"

namespace supaplane::event_store {

namespace {

constexpr std::int64_t kNsPerMs = 1'000'000;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("kv");
  return l;
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

Error missing(const std::string& name) {
  return make_error(errc::not_found, "key-value bucket " + name +
                                         " does not exist; an admin creates it with "
                                         "`supaplanectl admin init-stream`");
}

std::string subject_of(const std::string& bucket, const std::string& key) {
  return "$KV." + bucket + "." + key;
}

}  // namespace

std::string kv_stream_name(const std::string& name) { return "KV_" + name; }

Result<KvBucket> KvBucket::open(EventStore& store, const std::string& name) {
  if (!valid_name(name))
    return make_error(errc::invalid_argument,
                      "bucket name must be letters, digits, '-' or '_': '" + name + "'", "bucket");
  if (!store.connected()) return make_error(errc::unavailable, "NATS not connected");
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string stream = kv_stream_name(name);
  natsStatus s = js_GetStreamInfo(&si, store.jetstream(), stream.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) return missing(name);
  if (s != NATS_OK) return nats_error(s, jerr, "key-value bucket " + name);
  const std::int64_t max_age_ms = si->Config->MaxAge / kNsPerMs;
  jsStreamInfo_Destroy(si);
  if (max_age_ms <= 0)
    return make_error(errc::incompatible,
                      "key-value bucket " + name +
                          " has no TTL (its keys never expire); set one with `supaplanectl admin "
                          "init-stream`");
  return KvBucket(store, name, max_age_ms);
}

Result<KvEntry> KvBucket::get(const std::string& key) const {
  if (!store_->connected()) return make_error(errc::unavailable, "NATS not connected");
  const std::string subject = subject_of(name_, key);
  const std::string stream = kv_stream_name(name_);
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetLastMsg(&m, store_->jetstream(), stream.c_str(), subject.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) return KvEntry{};
  if (jerr == JSStreamNotFoundErr) return missing(name_);
  if (s != NATS_OK) return nats_error(s, jerr, "get " + subject);
  KvEntry e;
  e.revision = natsMsg_GetSequence(m);
  const char* op = nullptr;
  if (natsMsgHeader_Get(m, "KV-Operation", &op) == NATS_OK && op &&
      (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0)) {
    e.deleted = true;
  } else if (const char* data = natsMsg_GetData(m)) {
    e.value.assign(data, static_cast<std::size_t>(natsMsg_GetDataLength(m)));
  }
  natsMsg_Destroy(m);
  return e;
}

Result<std::uint64_t> KvBucket::put_if(const std::string& key, std::string_view value,
                                       std::uint64_t expected_revision, int timeout_ms) const {
  if (!store_->connected()) return make_error(errc::unavailable, "NATS not connected");
  const std::string subject = subject_of(name_, key);
  natsMsg* m = nullptr;
  natsStatus s =
      natsMsg_Create(&m, subject.c_str(), nullptr, value.data(), static_cast<int>(value.size()));
  if (s != NATS_OK) return nats_error(s, static_cast<jsErrCode>(0), "put " + subject);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = timeout_ms;
  if (expected_revision == 0)
    po.ExpectNoMessage = true;  // ExpectLastSubjectSeq = 0 would mean "unset"
  else
    po.ExpectLastSubjectSeq = expected_revision;
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  s = js_PublishMsg(&pa, store_->jetstream(), m, &po, &jerr);
  natsMsg_Destroy(m);
  if (s != NATS_OK) return nats_error(s, jerr, "put " + subject);
  const std::uint64_t rev = pa->Sequence;
  jsPubAck_Destroy(pa);
  return rev;
}

Status create_or_verify_kv_bucket(EventStore& store, const KvBucketSettings& want, bool* created,
                                  std::vector<std::string>* changed) {
  if (created) *created = false;
  if (!valid_name(want.name))
    return make_error(errc::invalid_argument,
                      "bucket name must be letters, digits, '-' or '_': '" + want.name + "'",
                      "bucket");
  if (want.ttl_ms < 1000)
    return make_error(errc::invalid_argument, "the lease TTL must be at least 1000 ms", "ttl_ms");
  if (!store.connected()) return make_error(errc::unavailable, "NATS not connected");
  const std::string stream = kv_stream_name(want.name);
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, store.jetstream(), stream.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = want.name.c_str();
    cfg.History = 1;
    cfg.TTL = want.ttl_ms * kNsPerMs;
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = want.replicas;
    kvStore* kv = nullptr;
    s = js_CreateKeyValue(&kv, store.jetstream(), &cfg);
    if (s != NATS_OK)
      return nats_error(s, static_cast<jsErrCode>(0), "create key-value bucket " + want.name);
    kvStore_Destroy(kv);
    log()->info("created key-value bucket {} (ttl {} ms, replicas {})", want.name, want.ttl_ms,
                want.replicas);
    if (created) *created = true;
    return Status::Ok();
  }
  if (s != NATS_OK) return nats_error(s, jerr, "key-value bucket " + want.name);
  jsStreamConfig cfg = *si->Config;  // its pointers stay valid until si is destroyed
  std::vector<std::string> changes;
  if (cfg.MaxAge != want.ttl_ms * kNsPerMs) {
    changes.push_back("ttl " + std::to_string(cfg.MaxAge / kNsPerMs) + " ms -> " +
                      std::to_string(want.ttl_ms) + " ms");
    cfg.MaxAge = want.ttl_ms * kNsPerMs;
    // The server refuses a duplicate window longer than the max age.
    cfg.Duplicates = std::min<std::int64_t>(cfg.Duplicates, cfg.MaxAge);
  }
  if (cfg.MaxMsgsPerSubject != 1) {
    changes.push_back("history " + std::to_string(cfg.MaxMsgsPerSubject) + " -> 1");
    cfg.MaxMsgsPerSubject = 1;
  }
  if (!changes.empty()) s = js_UpdateStream(nullptr, store.jetstream(), &cfg, nullptr, &jerr);
  jsStreamInfo_Destroy(si);
  if (s != NATS_OK) return nats_error(s, jerr, "update key-value bucket " + want.name);
  for (const auto& c : changes) log()->warn("key-value bucket {}: {}", want.name, c);
  if (changed) *changed = changes;
  return Status::Ok();
}

}  // namespace supaplane::event_store
