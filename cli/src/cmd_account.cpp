// signup, login, me.
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>

#include "api_client.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "output.hpp"
#include "token_file.hpp"

namespace supaplane::cli {

namespace {

struct CredentialOptions {
  std::string email;
  std::string password;
};

/// Reads one line from stdin; without echo and with a prompt on a terminal.
std::string read_password_line() {
  const bool tty = ::isatty(STDIN_FILENO) != 0;
  termios saved{};
  if (tty) {
    std::cerr << "password: " << std::flush;
    if (::tcgetattr(STDIN_FILENO, &saved) == 0) {
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
  }
  std::string line;
  std::getline(std::cin, line);
  if (tty) {
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    std::cerr << "\n";
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

/// --password, else SUPAPLANE_PASSWORD, else a line from stdin.
std::string resolve_password(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("SUPAPLANE_PASSWORD"); env && *env) return env;
  return read_password_line();
}

Json account_json(const v1::Account& a) {
  Json j;
  j["id"] = a.id();
  j["email"] = a.email();
  j["role"] = a.role();
  j["created_at"] = format_time(a.created_at());
  return j;
}

/// SignUp or Login; saves the token, prints who is logged in (never the token).
int start_session(const GlobalOptions& g, const CredentialOptions& o, bool signup) {
  v1::SignUpRequest up;
  v1::LoginRequest in;
  const std::string password = resolve_password(o.password);
  if (password.empty())
    return fail_usage("no password (use --password, SUPAPLANE_PASSWORD or stdin)");
  up.set_email(o.email);
  up.set_password(password);
  in.set_email(o.email);
  in.set_password(password);

  ApiClient client(g, /*token=*/{});
  v1::SessionResponse resp;
  auto ctx = client.context();
  const grpc::Status s = signup ? client.accounts().SignUp(ctx.get(), up, &resp)
                                : client.accounts().Login(ctx.get(), in, &resp);
  if (!s.ok()) return client.fail(s);
  if (auto st = write_token_file(g.token_file, resp.token()); !st) return fail(st.error());

  const auto& a = resp.account();
  if (g.json) {
    Json j;
    j["account"] = account_json(a);
    j["expires_at"] = format_time(resp.expires_at());
    j["token_file"] = g.token_file;
    print_json(std::cout, j);
  } else {
    std::cout << "logged in as " << a.email() << " (" << a.id() << ", " << a.role() << ")\n";
  }
  return 0;
}

int me(const GlobalOptions& g) {
  return with_session(g, [&](ApiClient& client) {
    v1::Account a;
    auto ctx = client.context();
    const grpc::Status s = client.accounts().Me(ctx.get(), v1::MeRequest{}, &a);
    if (!s.ok()) return client.fail(s);
    if (g.json) {
      print_json(std::cout, account_json(a));
    } else {
      std::cout << a.email() << " (" << a.id() << ", " << a.role() << "), created "
                << format_time(a.created_at()) << "\n";
    }
    return 0;
  });
}

void add_credentials(CLI::App* cmd, CredentialOptions& o) {
  cmd->add_option("--email", o.email, "account email")->required();
  cmd->add_option("--password", o.password,
                  "password (else SUPAPLANE_PASSWORD, else one line from stdin)");
}

}  // namespace

void add_account_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto o = std::make_shared<CredentialOptions>();

  auto* signup = add_command(app, "signup", "create an account and save its session token");
  add_credentials(signup, *o);
  on_parsed(signup, action, [&g, o] { return start_session(g, *o, /*signup=*/true); });

  auto* login = add_command(app, "login", "log in and save the session token");
  add_credentials(login, *o);
  on_parsed(login, action, [&g, o] { return start_session(g, *o, /*signup=*/false); });

  auto* who = add_command(app, "me", "show the logged-in account");
  on_parsed(who, action, [&g] { return me(g); });
}

}  // namespace supaplane::cli
