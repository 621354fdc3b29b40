// The public write_kv: validate (on the CPU, every slot too), then hand to the backend.
#include "wideattn/write_kv.h"

#include "core/backend.h"
#include "core/error.h"
#include "core/validate.h"
#include "wideattn/context.h"

namespace wideattn {

Status write_kv(Context& context, const WriteKvArguments& args) {
  return detail::guarded([&] {
    detail::validate_write_kv(args, context.backend());
    if (args.tokens == 0) return;
    context.impl().write_kv(args);
  });
}

}  // namespace wideattn
