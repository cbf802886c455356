#include "supaplane/event_store/event_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "supaplane/logging/logging.hpp"

namespace supaplane::event_store {

namespace {

constexpr std::int64_t kNsPerMs = 1'000'000;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logging::get("event_store");
  return l;
}

std::string header(natsMsg* m, const char* key) {
  const char* v = nullptr;
  if (natsMsgHeader_Get(m, key, &v) == NATS_OK && v) return v;
  return {};
}

void on_disconnected(natsConnection* nc, void*) {
  // A close of our own also reports a disconnect: not worth a warning.
  if (natsConnection_IsClosed(nc)) return;
  log()->warn("disconnected from NATS; reconnecting");
}
void on_reconnected(natsConnection*, void*) { log()->info("reconnected to NATS"); }
void on_connected(natsConnection*, void*) { log()->info("connected to NATS"); }

struct SubGuard {
  natsSubscription* sub{nullptr};
  ~SubGuard() {
    // Unsubscribe first: it stops the ordered consumer's flow control and
    // heartbeat handling inside the client and deletes the ephemeral
    // consumer (ordered or pull) on the server. Destroy alone left those running against a
    // freed subscription (heap corruption under concurrent replays).
    if (sub) {
      natsSubscription_Unsubscribe(sub);
      natsSubscription_Destroy(sub);
    }
  }
};

}  // namespace

Error nats_error(natsStatus s, jsErrCode jerr, const std::string& what) {
  if (s == NATS_ERR && jerr == JSStreamWrongLastSequenceErr)
    return make_error(errc::conflict, what + ": wrong expected sequence");
  if (s == NATS_NOT_FOUND) return make_error(errc::not_found, what + ": not found");
  if (jerr == JSStreamNotFoundErr)
    return make_error(errc::not_found, what + ": the stream does not exist (nothing recorded yet)");
  if (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED ||
      s == NATS_CONNECTION_DISCONNECTED || s == NATS_NO_SERVER || s == NATS_NOT_YET_CONNECTED ||
      s == NATS_IO_ERROR || s == NATS_STALE_CONNECTION)
    return make_error(errc::unavailable, what + ": " + natsStatus_GetText(s));
  std::string msg = what + ": " + natsStatus_GetText(s);
  if (jerr != 0) msg += " (jetstream error " + std::to_string(static_cast<int>(jerr)) + ")";
  return make_error(errc::unavailable, msg);
}

StoredMessage to_stored(natsMsg* m) {
  StoredMessage out;
  out.subject = natsMsg_GetSubject(m);
  const char* data = natsMsg_GetData(m);
  out.data.assign(data ? data : "", static_cast<std::size_t>(natsMsg_GetDataLength(m)));
  out.event_type = header(m, kHeaderEventType);
  out.correlation_id = header(m, kHeaderCorrelation);
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetReply(m) && natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
    out.sequence = meta->Sequence.Stream;
    out.timestamp_ns = meta->Timestamp;
    out.delivered = meta->NumDelivered;
    out.pending = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
  } else {
    out.sequence = natsMsg_GetSequence(m);
    out.timestamp_ns = natsMsg_GetTime(m);
  }
  return out;
}

LibraryScope::~LibraryScope() {
  // Connections are all destroyed by now; this joins cnats' threads.
  nats_CloseAndWait(2000);
}

EventStore::~EventStore() {
  if (conn_) natsConnection_Close(conn_);
  // Appends whose ack can no longer arrive are answered, not forgotten.
  std::unordered_map<natsMsg*, AppendCallback> orphans;
  {
    std::lock_guard lk(pending_mu_);
    orphans.swap(pending_);
  }
  for (auto& [msg, cb] : orphans)
    cb(make_error(errc::unavailable, "event store closed before the append was acknowledged"));
  if (js_) jsCtx_Destroy(js_);
  if (conn_) natsConnection_Destroy(conn_);
}

Result<std::unique_ptr<EventStore>> EventStore::connect(const ConnectOptions& o,
                                                        StreamSettings stream) {
  std::unique_ptr<EventStore> es(new EventStore());
  es->stream_ = std::move(stream);
  es->request_timeout_ms_ = o.request_timeout_ms;
  const std::string where = redact_url(o.url);
  const std::vector<std::string> urls = split_urls(o.url);
  if (urls.empty()) return make_error(errc::invalid_argument, "no NATS URL given", "nats_url");
  // cnats splits a comma-separated list only in natsConnection_ConnectTo:
  // natsOptions_SetURL takes the whole list as one URL (whose port is read up
  // to the first comma), so a cluster's list would pin the client to its
  // first node. Hand the nodes over as a server list.
  std::vector<const char*> servers;
  for (const auto& u : urls) servers.push_back(u.c_str());
  natsOptions* opts = nullptr;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) {
    if (servers.size() == 1)
      s = natsOptions_SetURL(opts, servers[0]);
    else
      s = natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  }
  if (!o.creds_file.empty() && ::access(o.creds_file.c_str(), R_OK) != 0) {
    // cnats reads the file only when it connects, in the background.
    natsOptions_Destroy(opts);
    return make_error(errc::invalid_argument,
                      "NATS credentials file " + o.creds_file + ": " + std::strerror(errno),
                      "nats_creds");
  }
  if (s == NATS_OK && !o.creds_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(opts, o.creds_file.c_str(), nullptr);
    if (s != NATS_OK) {
      natsOptions_Destroy(opts);
      return make_error(errc::invalid_argument,
                        "NATS credentials file " + o.creds_file + ": " + natsStatus_GetText(s),
                        "nats_creds");
    }
  }
  if (s == NATS_OK) s = natsOptions_SetName(opts, o.name.c_str());
  if (s == NATS_OK && !o.inbox_prefix.empty())
    s = natsOptions_SetCustomInboxPrefix(opts, o.inbox_prefix.c_str());
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, o.reconnect_wait_ms);
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK && !o.fail_fast)
    // With a connected callback, Connect returns at once (NOT_YET_CONNECTED)
    // and keeps trying in the background; without one it would block.
    s = natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, on_disconnected, nullptr);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, on_reconnected, nullptr);
  if (s == NATS_OK) {
    s = natsConnection_Connect(&es->conn_, opts);
    if (s == NATS_NOT_YET_CONNECTED) {
      log()->warn("NATS at {} not reachable yet; retrying in the background", where);
      s = NATS_OK;
    }
  }
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    // cnats keeps the server's own reason ("Authorization Violation") in
    // its per-thread error text; it never holds the URL's password.
    std::string reason = scrub_secrets(nats_GetLastError(nullptr), o.url);
    auto e = nats_error(s, static_cast<jsErrCode>(0), "connect to NATS at " + where);
    if (!reason.empty() && e.message.find(reason) == std::string::npos)
      e.message += " (" + reason + ")";
    return e;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = o.request_timeout_ms;
  jo.PublishAsync.AckHandler = &EventStore::on_async_ack;
  jo.PublishAsync.AckHandlerClosure = es.get();
  jo.PublishAsync.MaxPending = 8192;
  s = natsConnection_JetStream(&es->js_, es->conn_, &jo);
  if (s != NATS_OK) return nats_error(s, static_cast<jsErrCode>(0), "JetStream context");
  return es;
}

bool EventStore::connected() const {
  return conn_ && natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED;
}

Error EventStore::not_connected(std::string_view what, std::string_view subject) {
  std::string m = "NATS is not connected; ";
  m.append(what);
  if (!subject.empty()) m.append(" ").append(subject);
  return make_error(errc::unavailable, m + " not attempted");
}

namespace {

const char* retention_name(jsRetentionPolicy r) {
  switch (r) {
    case js_LimitsPolicy:
      return "limits";
    case js_InterestPolicy:
      return "interest";
    case js_WorkQueuePolicy:
      return "workqueue";
  }
  return "unknown";
}

}  // namespace

std::vector<std::string> stream_problems(const jsStreamConfig& c, const StreamSettings& want) {
  std::vector<std::string> p;
  bool has_subject = false;
  for (int i = 0; i < c.SubjectsLen; ++i)
    if (c.Subjects[i] && want.subjects == c.Subjects[i]) has_subject = true;
  if (!has_subject) p.push_back("subjects do not include " + want.subjects);
  if (c.Storage != js_FileStorage) p.push_back("storage is memory, must be file");
  // A work-queue or interest stream deletes what its consumers acked.
  if (c.Retention != js_LimitsPolicy)
    p.push_back(std::string("retention is ") + retention_name(c.Retention) + ", must be limits");
  if (c.MaxMsgs > 0)
    p.push_back("max_msgs is " + std::to_string(c.MaxMsgs) + ", must be unlimited");
  if (c.MaxBytes > 0)
    p.push_back("max_bytes is " + std::to_string(c.MaxBytes) + ", must be unlimited");
  if (c.MaxAge > 0)
    p.push_back("max_age is " + std::to_string(c.MaxAge / kNsPerMs) + " ms, must be unlimited");
  if (c.MaxMsgsPerSubject > 0)
    p.push_back("max_msgs_per_subject is " + std::to_string(c.MaxMsgsPerSubject) +
                ", must be unlimited");
  // Should a limit ever be reached, refuse the new event, never drop old ones.
  if (c.Discard != js_DiscardNew) p.push_back("discard is old, must be new");
  if (!c.DenyDelete) p.push_back("deny_delete is off");
  if (!c.DenyPurge) p.push_back("deny_purge is off");
  // A Nats-Rollup header would purge a subject's history.
  if (c.AllowRollup) p.push_back("allow_rollup is on");
  if (c.Duplicates < want.duplicate_window_ms * kNsPerMs)
    p.push_back("duplicate window " + std::to_string(c.Duplicates / kNsPerMs) +
                " ms is shorter than " + std::to_string(want.duplicate_window_ms) + " ms");
  if (c.Sealed) p.push_back("sealed is on (no append can succeed)");
  if (c.NoAck) p.push_back("no_ack is on (appends would not be acknowledged)");
  if (c.Mirror) p.push_back("it is a mirror (appends are refused)");
  return p;
}

std::vector<std::string> split_urls(std::string_view urls) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= urls.size()) {
    std::size_t comma = urls.find(',', pos);
    if (comma == std::string_view::npos) comma = urls.size();
    std::string_view u = urls.substr(pos, comma - pos);
    while (!u.empty() && (u.front() == ' ' || u.front() == '\t')) u.remove_prefix(1);
    while (!u.empty() && (u.back() == ' ' || u.back() == '\t')) u.remove_suffix(1);
    if (!u.empty()) out.emplace_back(u);
    pos = comma + 1;
  }
  return out;
}

namespace {
/// The user-info part (`user:password` or `token`) of one URL; npos if none.
std::pair<std::size_t, std::size_t> userinfo(std::string_view u) {
  const std::size_t scheme = u.find("://");
  const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const std::size_t slash = u.find('/', start);
  const std::size_t at = u.rfind('@', slash == std::string_view::npos ? u.size() : slash);
  if (at == std::string_view::npos || at < start) return {std::string_view::npos, 0};
  return {start, at};
}
}  // namespace

std::string redact_url(std::string_view urls) {
  std::string out;
  for (const auto& u : split_urls(urls)) {
    if (!out.empty()) out += ",";
    auto [start, at] = userinfo(u);
    if (start == std::string_view::npos) {
      out += u;
      continue;
    }
    const std::string_view info = std::string_view(u).substr(start, at - start);
    const std::size_t colon = info.find(':');
    out += u.substr(0, start);
    // user:password keeps the user (useful, not secret); a lone token goes.
    out += colon == std::string_view::npos ? std::string("***")
                                           : std::string(info.substr(0, colon)) + ":***";
    out += u.substr(at);
  }
  return out;
}

std::string scrub_secrets(const char* text, std::string_view urls) {
  std::string out = text ? text : "";
  for (const auto& u : split_urls(urls)) {
    auto [start, at] = userinfo(u);
    if (start == std::string_view::npos) continue;
    const std::string info = u.substr(start, at - start);
    const std::size_t colon = info.find(':');
    const std::string secret = colon == std::string::npos ? info : info.substr(colon + 1);
    if (secret.empty()) continue;
    for (std::size_t p = out.find(secret); p != std::string::npos; p = out.find(secret, p + 3))
      out.replace(p, secret.size(), "***");
  }
  return out;
}

Status EventStore::verify_stream() {
  if (!connected()) return not_connected("stream check of", stream_.name);
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream_.name.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
    return make_error(errc::not_found, "stream " + stream_.name +
                                           " does not exist; an admin creates it with "
                                           "`supaplanectl admin init-stream`");
  if (s != NATS_OK) return nats_error(s, jerr, "stream info " + stream_.name);
  const auto problems = stream_problems(*si->Config, stream_);
  const auto replicas = si->Config->Replicas;
  jsStreamInfo_Destroy(si);
  if (replicas != stream_.replicas)
    log()->warn("stream {} has {} replicas, configured {}", stream_.name, replicas,
                stream_.replicas);
  if (!problems.empty()) {
    std::string msg = "stream " + stream_.name + " does not protect the log:";
    for (const auto& p : problems) msg += " " + p + ";";
    return make_error(errc::incompatible, msg + " fix it (nats stream edit) or recreate it");
  }
  return Status::Ok();
}

Status EventStore::tighten_stream(std::vector<std::string>* changes) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream_.name.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return nats_error(s, jerr, "stream info " + stream_.name);
  jsStreamConfig cfg = *si->Config;  // its pointers stay valid until si is destroyed
  if (cfg.Discard != js_DiscardNew) {
    cfg.Discard = js_DiscardNew;
    changes->push_back("discard old -> new");
  }
  if (cfg.Duplicates < stream_.duplicate_window_ms * kNsPerMs) {
    changes->push_back("duplicate window " + std::to_string(cfg.Duplicates / kNsPerMs) + " ms -> " +
                       std::to_string(stream_.duplicate_window_ms) + " ms");
    cfg.Duplicates = stream_.duplicate_window_ms * kNsPerMs;
  }
  if (!changes->empty()) s = js_UpdateStream(nullptr, js_, &cfg, nullptr, &jerr);
  jsStreamInfo_Destroy(si);
  if (s != NATS_OK) return nats_error(s, jerr, "update stream " + stream_.name);
  return Status::Ok();
}

Status EventStore::create_or_verify_stream(bool* created, std::vector<std::string>* changed) {
  if (created) *created = false;
  auto st = verify_stream();
  if (!st && st.error().code == errc::incompatible) {
    // Settings a stream update may tighten in place, without touching a
    // message (streams made before they were checked had discard old).
    // The rest needs an operator: the check below names it.
    std::vector<std::string> changes;
    if (auto t = tighten_stream(&changes); !t) return t;
    if (changes.empty()) return st;
    for (const auto& c : changes) log()->warn("stream {}: {}", stream_.name, c);
    if (changed) *changed = changes;
    return verify_stream();
  }
  if (st || st.error().code != errc::not_found) return st;
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream_.name.c_str();
  const char* subjects[] = {stream_.subjects.c_str()};
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Retention = js_LimitsPolicy;
  cfg.Discard = js_DiscardNew;
  cfg.Replicas = stream_.replicas;
  cfg.Duplicates = stream_.duplicate_window_ms * kNsPerMs;
  cfg.DenyDelete = true;
  cfg.DenyPurge = true;
  cfg.AllowRollup = false;
  cfg.AllowDirect = true;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
  if (s != NATS_OK) return nats_error(s, jerr, "create stream " + stream_.name);
  jsStreamInfo_Destroy(si);
  log()->info("created stream {} (subjects {}, replicas {})", stream_.name, stream_.subjects,
              stream_.replicas);
  if (created) *created = true;
  return Status::Ok();
}

natsMsg* EventStore::build_message(const OutgoingEvent& ev, jsPubOptions* po, natsStatus* status) {
  natsMsg* msg = nullptr;
  *status = natsMsg_Create(&msg, ev.subject.c_str(), nullptr, ev.body.data(),
                           static_cast<int>(ev.body.size()));
  if (*status != NATS_OK) return nullptr;
  if (!ev.event_type.empty()) natsMsgHeader_Set(msg, kHeaderEventType, ev.event_type.c_str());
  if (!ev.schema.empty()) natsMsgHeader_Set(msg, kHeaderSchema, ev.schema.c_str());
  if (!ev.correlation_id.empty())
    natsMsgHeader_Set(msg, kHeaderCorrelation, ev.correlation_id.c_str());
  jsPubOptions_Init(po);
  po->MaxWait = request_timeout_ms_;
  po->ExpectStream = stream_.name.c_str();
  if (!ev.msg_id.empty()) po->MsgId = ev.msg_id.c_str();
  if (ev.expected.kind == Expected::Kind::no_message) po->ExpectNoMessage = true;
  if (ev.expected.kind == Expected::Kind::sequence) po->ExpectLastSubjectSeq = ev.expected.sequence;
  return msg;
}

Result<AppendResult> EventStore::append(const OutgoingEvent& ev) {
  if (!connected()) return not_connected("append to", ev.subject);
  jsPubOptions po;
  natsStatus s = NATS_OK;
  natsMsg* msg = build_message(ev, &po, &s);
  if (!msg) return nats_error(s, static_cast<jsErrCode>(0), "create message");
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  s = js_PublishMsg(&pa, js_, msg, &po, &jerr);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) return nats_error(s, jerr, "append to " + ev.subject);
  AppendResult r{StreamSequence(pa->Sequence), pa->Duplicate};
  jsPubAck_Destroy(pa);
  return r;
}

void EventStore::append_async(const OutgoingEvent& ev, AppendCallback done) {
  if (!connected()) {
    done(not_connected("append to", ev.subject));
    return;
  }
  jsPubOptions po;
  natsStatus s = NATS_OK;
  natsMsg* msg = build_message(ev, &po, &s);
  if (!msg) {
    done(nats_error(s, static_cast<jsErrCode>(0), "create message"));
    return;
  }
  natsMsg* key = msg;
  {
    // Registered before publishing: the ack may arrive before we return.
    std::lock_guard lk(pending_mu_);
    pending_.emplace(key, std::move(done));
  }
  s = js_PublishMsgAsync(js_, &msg, &po);
  if (s != NATS_OK) {
    AppendCallback cb;
    {
      std::lock_guard lk(pending_mu_);
      auto it = pending_.find(key);
      if (it != pending_.end()) {
        cb = std::move(it->second);
        pending_.erase(it);
      }
    }
    natsMsg_Destroy(msg);  // no-op when the library took it
    if (cb) cb(nats_error(s, static_cast<jsErrCode>(0), "append to " + ev.subject));
  }
}

void EventStore::on_async_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* self = static_cast<EventStore*>(closure);
  AppendCallback cb;
  {
    std::lock_guard lk(self->pending_mu_);
    auto it = self->pending_.find(msg);
    if (it != self->pending_.end()) {
      cb = std::move(it->second);
      self->pending_.erase(it);
    }
  }
  if (cb) {
    if (pa) {
      cb(AppendResult{StreamSequence(pa->Sequence), pa->Duplicate});
    } else {
      const natsStatus err = pae ? pae->Err : NATS_ERR;
      const jsErrCode code = pae ? pae->ErrCode : static_cast<jsErrCode>(0);
      const char* subj = natsMsg_GetSubject(msg);
      cb(nats_error(err, code, std::string("append to ") + (subj ? subj : "?")));
    }
  }
  natsMsg_Destroy(msg);
}

Result<StoredMessage> EventStore::get(std::uint64_t sequence) {
  if (!connected()) return not_connected("get message");
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetMsg(&m, js_, stream_.name.c_str(), sequence, nullptr, &jerr);
  if (s != NATS_OK) return nats_error(s, jerr, "get message " + std::to_string(sequence));
  StoredMessage out = to_stored(m);
  natsMsg_Destroy(m);
  return out;
}

Result<std::uint64_t> EventStore::last_sequence() {
  if (!connected()) return not_connected("stream info");
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream_.name.c_str(), nullptr, &jerr);
  if (s != NATS_OK) return nats_error(s, jerr, "stream info");
  std::uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  return last;
}

std::string inbox_prefix_for(const std::string& service) {
  constexpr std::string_view kPrefix = "supaplane-";
  const std::string user =
      service.rfind(kPrefix, 0) == 0 ? service.substr(kPrefix.size()) : service;
  return "_INBOX_" + user;
}

std::string inbox_prefix_for_url(const std::string& url) {
  const auto urls = split_urls(url);
  if (urls.empty()) return {};
  const std::string& u = urls.front();
  const auto scheme = u.find("://");
  const std::size_t from = scheme == std::string::npos ? 0 : scheme + 3;
  const auto at = u.rfind('@');
  if (at == std::string::npos || at < from) return {};
  const auto colon = u.find(':', from);
  if (colon == std::string::npos || colon > at || colon == from) return {};  // a token
  return "_INBOX_" + u.substr(from, colon - from);
}

Result<std::unique_ptr<EventStore>> open_for_service(const std::string& url,
                                                     const std::string& service, int replicas,
                                                     bool* stream_ready) {
  ConnectOptions co;
  co.url = url;
  co.name = service;
  // Replies to this service come on its own prefix: its NATS user may
  // subscribe to nothing else, so no service reads another's replies.
  co.inbox_prefix = inbox_prefix_for(service);
  // Read here rather than by each service's flags: one setting for all four.
  if (const char* creds = std::getenv("SUPAPLANE_NATS_CREDS")) co.creds_file = creds;
  StreamSettings ss;
  ss.replicas = replicas;
  auto es = EventStore::connect(co, ss);
  if (!es) return es.error();
  auto st = (*es)->verify_stream();
  *stream_ready = st.ok();
  if (!st) {
    if (st.error().code == errc::incompatible) return st.error();
    log()->warn("{}: event store not ready yet: {}", service, st.error().message);
  }
  return std::move(*es);
}

Result<std::vector<std::string>> EventStore::subjects(const std::string& filter) {
  if (!connected()) return not_connected("stream subjects");
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = request_timeout_ms_;
  o.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream_.name.c_str(), &o, &jerr);
  if (s != NATS_OK) return nats_error(s, jerr, "stream subjects");
  std::vector<std::string> out;
  if (si->State.Subjects)
    for (int i = 0; i < si->State.Subjects->Count; ++i)
      out.emplace_back(si->State.Subjects->List[i].Subject);
  jsStreamInfo_Destroy(si);
  return out;
}

Status EventStore::replay(const std::string& filter, std::uint64_t from_sequence,
                          const ReplayHandler& handler, ReplayRead read) {
  auto last = last_sequence();
  if (!last) return last.error();
  if (*last == 0 || from_sequence > *last) return Status::Ok();
  const bool pull = read == ReplayRead::pull_batches;
  SubGuard g;
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream_.name.c_str();
  if (from_sequence <= 1) {
    so.Config.DeliverPolicy = js_DeliverAll;
  } else {
    so.Config.DeliverPolicy = js_DeliverByStartSequence;
    so.Config.OptStartSeq = from_sequence;
  }
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s;
  if (pull) {
    so.Config.AckPolicy = js_AckNone;
    so.Config.InactiveThreshold = 60'000'000'000LL;  // gone on its own if this process dies
    s = js_PullSubscribe(&g.sub, js_, filter.c_str(), nullptr, nullptr, &so, &jerr);
  } else {
    so.Ordered = true;
    s = js_SubscribeSync(&g.sub, js_, filter.c_str(), nullptr, &so, &jerr);
  }
  if (s != NATS_OK) return nats_error(s, jerr, "replay subscribe " + filter);
  natsSubscription_SetPendingLimits(g.sub, -1, -1);
  // The stream denies deletes and purges and has no limits, so a replay of
  // every subject must see each sequence from its start to the last one.
  // An ephemeral consumer may be placed on a replica still catching up after
  // a restart: it delivers what that replica holds, with holes and an early
  // end, and calls it complete. Such a replay is refused, never folded.
  const bool whole_stream = filter == stream_.subjects;
  constexpr std::uint64_t kBatch = 1024;  // larger batches measured slower (docs/benchmarks.md)
  std::uint64_t expected = from_sequence <= 1 ? 1 : from_sequence;
  bool received = false;
  natsMsgList list{};
  struct ListGuard {
    natsMsgList* l;
    ~ListGuard() { natsMsgList_Destroy(l); }
  } list_guard{&list};
  int at = 0;              // next message of `list`
  bool wait_next = false;  // the last fetch found nothing there at once
  for (;;) {
    natsMsg* m = nullptr;
    bool silent = false;  // nothing came before the wait ended
    if (!pull) {
      s = natsSubscription_NextMsg(&m, g.sub, request_timeout_ms_);
      silent = s == NATS_TIMEOUT;
    } else if (at < list.Count) {
      m = list.Msgs[at];
      list.Msgs[at++] = nullptr;  // ours now
      s = NATS_OK;
    } else {
      natsMsgList_Destroy(&list);
      at = 0;
      jsFetchRequest req;
      jsFetchRequest_Init(&req);
      // Each fetch takes what the consumer's server holds now (NoWait: a
      // waiting request is about half as fast here). "Nothing more" ends a
      // filtered replay, as `pending == 0` does below; a whole-stream replay
      // short of `last` then waits once for exactly what is left (a replica
      // catching up), and only a wait that brings nothing ends it.
      req.Batch = static_cast<int>(whole_stream ? std::min(kBatch, *last - expected + 1) : kBatch);
      req.NoWait = !(whole_stream && wait_next);
      req.MaxBytes = 32 << 20;
      req.Expires = static_cast<std::int64_t>(request_timeout_ms_) * 1'000'000;
      s = natsSubscription_FetchRequest(&list, g.sub, &req);
      if (list.Count > 0) {
        wait_next = false;
        continue;
      }
      if (whole_stream && !wait_next &&
          (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND)) {
        wait_next = true;
        continue;
      }
      silent = s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND;
    }
    if (silent) {
      // Nothing matched the filter at all: an empty replay. A silence after
      // messages said more were pending is a cut-off, never an end.
      if (!received && !whole_stream) return Status::Ok();
      if (pull && !whole_stream) return Status::Ok();  // "nothing more" (NoWait)
      if (!received)
        return make_error(errc::unavailable, "replay " + filter + " heard nothing up to " +
                                                 std::to_string(*last) + "; retry");
      return make_error(errc::unavailable, "replay " + filter + " stalled at " +
                                               std::to_string(expected - 1) + " before " +
                                               std::to_string(*last) + "; retry");
    }
    if (s != NATS_OK) return nats_error(s, static_cast<jsErrCode>(0), "replay " + filter);
    received = true;
    StoredMessage sm = to_stored(m);
    natsMsg_Destroy(m);
    if (whole_stream && sm.sequence != expected) {
      log()->warn("replay {} skipped sequences {}..{}: a replica is behind", filter, expected,
                  sm.sequence - 1);
      return make_error(errc::unavailable, "replay " + filter + " skipped sequences " +
                                               std::to_string(expected) + ".." +
                                               std::to_string(sm.sequence - 1) + "; retry");
    }
    expected = sm.sequence + 1;
    const bool more = handler(sm);
    if (!more || sm.sequence >= *last) return Status::Ok();
    // A replica that has not applied the last entries yet counts nothing
    // pending: a whole-stream replay waits for them (the timeout above ends
    // a wait that never ends) rather than stop short of `last`.
    if (sm.pending == 0 && !whole_stream) return Status::Ok();
  }
}

Result<std::vector<StoredMessage>> EventStore::read_subject(const std::string& subject) {
  if (!connected()) return not_connected("read", subject);
  std::vector<StoredMessage> out;
  natsMsg* lastmsg = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s =
      js_GetLastMsg(&lastmsg, js_, stream_.name.c_str(), subject.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND) return out;
  if (s != NATS_OK) return nats_error(s, jerr, "last message of " + subject);
  const std::uint64_t last = natsMsg_GetSequence(lastmsg);
  natsMsg_Destroy(lastmsg);
  auto st = replay(subject, 1, [&](const StoredMessage& m) {
    out.push_back(m);
    return m.sequence < last;
  });
  if (!st) return st.error();
  // The history is whole only if it reaches the subject's last message.
  if (out.empty() || out.back().sequence < last)
    return make_error(errc::unavailable, "history of " + subject + " was cut short; retry");
  return out;
}

}  // namespace supaplane::event_store
