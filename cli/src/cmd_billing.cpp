// billing checkout | change-plan: supaplane-billing's BillingService (Stripe).
#include <iostream>
#include <memory>

#include "api_client.hpp"
#include "commands.hpp"
#include "exit_codes.hpp"
#include "output.hpp"

namespace supaplane::cli {

namespace {

struct BillingOptions {
  std::string ref;
  std::string plan;
};

/// STARTER or PRO from --plan (FREE is not bought: cancel in Stripe instead).
std::optional<v1::Plan> paid_plan(const std::string& name) {
  auto plan = parse_plan(name);
  if (!plan || *plan == v1::PLAN_FREE) return std::nullopt;
  return plan;
}

int checkout(const GlobalOptions& g, const BillingOptions& o) {
  const auto plan = paid_plan(o.plan);
  if (!plan) return fail_usage("--plan must be starter or pro, not '" + o.plan + "'");
  v1::CreateCheckoutSessionRequest req;
  req.set_ref(o.ref);
  req.set_plan(*plan);
  return unary_call<v1::CheckoutSession>(
      g,
      [&](ApiClient& c, auto* ctx, auto* resp) {
        return c.billing().CreateCheckoutSession(ctx, req, resp);
      },
      [&](const v1::CheckoutSession& s) {
        if (g.json) {
          Json j;
          j["id"] = s.id();
          j["url"] = s.url();
          print_json(std::cout, j);
        } else {
          std::cout << "open this page to pay for " << o.ref << " (" << o.plan << "):\n"
                    << s.url() << "\n";
        }
      });
}

int change_plan(const GlobalOptions& g, const BillingOptions& o) {
  const auto plan = paid_plan(o.plan);
  if (!plan) return fail_usage("--plan must be starter or pro, not '" + o.plan + "'");
  v1::ChangeSubscriptionPlanRequest req;
  req.set_ref(o.ref);
  req.set_plan(*plan);
  return unary_call<v1::SubscriptionPlanChange>(
      g,
      [&](ApiClient& c, auto* ctx, auto* resp) {
        return c.billing().ChangeSubscriptionPlan(ctx, req, resp);
      },
      [&](const v1::SubscriptionPlanChange& r) {
        if (g.json) {
          Json j;
          j["subscription_id"] = r.subscription_id();
          j["plan"] = o.plan;
          j["changed"] = r.changed();
          print_json(std::cout, j);
        } else if (r.changed()) {
          std::cout << "subscription " << r.subscription_id() << " moved to " << o.plan
                    << "; the tenant's plan follows once Stripe confirms\n";
        } else {
          std::cout << "subscription " << r.subscription_id() << " is already on " << o.plan
                    << "\n";
        }
      });
}

}  // namespace

void add_billing_commands(CLI::App& app, const GlobalOptions& g, Action& action) {
  auto o = std::make_shared<BillingOptions>();
  auto* billing = add_command(app, "billing", "pay for a tenant (supaplane-billing, Stripe)");
  billing->require_subcommand(1);

  auto* checkout_cmd =
      add_command(*billing, "checkout", "buy a first subscription: prints Stripe's payment page");
  checkout_cmd->add_option("ref", o->ref, "tenant ref")->required();
  checkout_cmd->add_option("--plan", o->plan, "starter | pro")->required();
  on_parsed(checkout_cmd, action, [&g, o] { return checkout(g, *o); });

  auto* change_cmd =
      add_command(*billing, "change-plan", "move the tenant's live subscription to another plan");
  change_cmd->add_option("ref", o->ref, "tenant ref")->required();
  change_cmd->add_option("--plan", o->plan, "starter | pro")->required();
  on_parsed(change_cmd, action, [&g, o] { return change_plan(g, *o); });
}

}  // namespace supaplane::cli
