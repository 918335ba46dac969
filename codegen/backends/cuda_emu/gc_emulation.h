// graphcore CUDA emulation: runs a generated CUDA translation unit on the CPU (backend 'cuda-emu').
//
// The .cu text is compiled unchanged by g++ with -DGC_CUDA_EMULATION; prelude.cuh then includes
// this header instead of cuda_runtime.h. It covers exactly what the generated kernels use:
// blocks and threads, grid-stride loops, __shared__ tiles, __syncthreads, atomicAdd, min and the
// host math functions (x86-64 or any platform with ucontext).
//
// Model. A launch runs its blocks one after another on each OpenMP thread (blocks are
// independent on a GPU, so they may run in parallel here too). Inside a block every CUDA thread
// is a fiber on one OS thread, so a schedule is a plain, reproducible sequence:
//   - threadIdx/blockIdx/blockDim/gridDim read the running fiber's and block's values;
//   - __syncthreads parks the fiber; when every live fiber is parked they all resume. A barrier
//     reached by only part of the block (some threads have exited) is reported as an error;
//   - __shared__ is static thread_local storage: one copy per OS thread, i.e. per running block;
//   - atomicAdd is a compare-and-swap loop on the value's bits.
// Natural schedule (shuffle = 0): blocks in index order, fibers in thread order, each runs to
// its next barrier. Shuffled schedule (shuffle = 1): blocks in a seeded random order, the next
// fiber drawn at random, and a fiber may yield before every atomic, so a kernel that relies on
// an ordering CUDA does not promise (a missing barrier, a plain store where threads collide)
// computes something else.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <type_traits>
#include <vector>
#include <sys/mman.h>
#include <ucontext.h>

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t { cudaSuccess = 0 };

// The settings of one call, passed by the Python side through the entry's stream argument.
struct GcEmuConfig {
  uint64_t seed;    // schedule seed (shuffle = 1)
  int32_t shuffle;  // 0: natural schedule, 1: seeded random schedule
  int32_t threads;  // OS threads running blocks (1 for a reproducible shuffled schedule)
  int64_t launches; // out: kernels launched (each launch draws its own schedule from the seed)
  int64_t blocks;   // out: blocks run
  int64_t yields;   // out: fiber switches outside barriers (shuffled schedule)
};
typedef GcEmuConfig* cudaStream_t;

namespace gc_emu {

enum : int32_t { DIVERGENT_BARRIER = 1001, BLOCK_TOO_LARGE = 1002, NO_STACK = 1003 };
enum State { RUNNABLE, AT_BARRIER, DONE };
constexpr size_t STACK_BYTES = 256 * 1024;  // kernels keep a row's temporaries on the stack
constexpr size_t GUARD_BYTES = 4096;        // an overflow faults instead of corrupting a neighbour
constexpr unsigned MAX_THREADS = 1024;

struct Rng {  // splitmix64: small, seedable, good enough to draw schedules
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// Fiber contexts. On x86-64 a switch saves the callee-saved registers on the fiber's own stack
// (a few nanoseconds); elsewhere ucontext does it (a signal-mask system call per switch).
#if defined(__x86_64__)
extern "C" void gc_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl gc_emu_switch
  .hidden gc_emu_switch
  .type gc_emu_switch, @function
gc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gc_emu_switch, .-gc_emu_switch
)");
struct Context {
  void* sp = nullptr;
};
inline void swap(Context& from, Context& to) { gc_emu_switch(&from.sp, to.sp); }
// A context that starts `entry` on the stack [base, base + size) at its first switch.
inline void prepare(Context& c, char* base, size_t size, void (*entry)(), Context&) {
  uintptr_t top = ((uintptr_t)(base + size)) & ~(uintptr_t)15;
  void** sp = (void**)(top - 72);  // control words, six registers, return address; entry sees rsp = 8 mod 16
  uint32_t control[2] = {0, 0};
  asm volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(control[0]), "=m"(control[1]));
  std::memcpy(sp, control, 8);
  for (int i = 1; i < 7; ++i) sp[i] = nullptr;
  sp[7] = (void*)entry;
  c.sp = sp;
}
#else
struct Context {
  ucontext_t uc;
};
inline void swap(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
inline void prepare(Context& c, char* base, size_t size, void (*entry)(), Context& link) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = base;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = &link.uc;
  makecontext(&c.uc, entry, 0);
}
#endif

struct Fiber {
  Context ctx;
  dim3 tid;
  State state;
};

struct Block {
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  Context scheduler;
  Fiber* current = nullptr;
  dim3 block_idx, block_dim, grid_dim;
  void (*invoke)(void*) = nullptr;
  void* body = nullptr;
  Rng rng{0};
  bool shuffle = false;
  int32_t error = 0;
  int64_t yields = 0;
  ~Block() {
    for (char* s : stacks) munmap(s, STACK_BYTES);
  }
};

inline thread_local Block* running = nullptr;  // the block this OS thread is running
inline thread_local int32_t last_error = 0;    // what cudaGetLastError reports on the entry's thread

inline Block& this_thread_block() {
  static thread_local Block block;
  return block;
}

inline void switch_to_scheduler() {
  Block* b = running;
  swap(b->current->ctx, b->scheduler);
}

[[noreturn]] inline void fiber_main() {
  Block* b = running;
  b->invoke(b->body);
  b->current->state = DONE;
  switch_to_scheduler();
  __builtin_unreachable();  // the scheduler never resumes a finished fiber
}

inline void syncthreads() {
  running->current->state = AT_BARRIER;
  switch_to_scheduler();
}

// Under a shuffled schedule, give another fiber the turn before an atomic (half the time).
inline void maybe_yield() {
  Block* b = running;
  if (!b->shuffle || b->fibers.size() < 2 || b->rng.below(2) == 0) return;
  ++b->yields;
  switch_to_scheduler();
}

inline bool ensure_stacks(Block& b, unsigned n) {
  while (b.stacks.size() < n) {
    void* p = mmap(nullptr, STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return false;
    mprotect(p, GUARD_BYTES, PROT_NONE);  // stacks grow down: the guard is the lowest page
    b.stacks.push_back(static_cast<char*>(p));
  }
  return true;
}

// Run every thread of the block in `b` to completion under its schedule.
inline void run_block(Block& b) {
  const unsigned n = b.block_dim.x * b.block_dim.y * b.block_dim.z;
  if (n == 0 || n > MAX_THREADS) {
    b.error = BLOCK_TOO_LARGE;
    return;
  }
  if (!ensure_stacks(b, n)) {
    b.error = NO_STACK;
    return;
  }
  b.fibers.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = b.fibers[i];
    prepare(f.ctx, b.stacks[i] + GUARD_BYTES, STACK_BYTES - GUARD_BYTES, fiber_main, b.scheduler);
    f.tid = dim3(i % b.block_dim.x, (i / b.block_dim.x) % b.block_dim.y, i / (b.block_dim.x * b.block_dim.y));
    f.state = RUNNABLE;
  }
  // runnable fibers; the natural schedule takes them from the back, so keep them in descending order
  std::vector<unsigned> runnable(n), waiting;
  std::iota(runnable.rbegin(), runnable.rend(), 0u);
  unsigned alive = n;
  while (true) {
    if (runnable.empty()) {
      if (waiting.empty()) break;
      if (alive != n) b.error = DIVERGENT_BARRIER;  // some threads exited, the others wait here
      for (unsigned id : waiting) b.fibers[id].state = RUNNABLE;
      runnable.swap(waiting);
      waiting.clear();
      if (!b.shuffle) std::sort(runnable.rbegin(), runnable.rend());
    }
    const size_t pick = b.shuffle ? b.rng.below(runnable.size()) : runnable.size() - 1;
    const unsigned id = runnable[pick];
    Fiber& f = b.fibers[id];
    b.current = &f;
    swap(b.scheduler, f.ctx);
    if (f.state == RUNNABLE) continue;  // it yielded and stays in the draw
    runnable[pick] = runnable.back();
    runnable.pop_back();
    if (f.state == AT_BARRIER) waiting.push_back(id);
    else --alive;
  }
  b.current = nullptr;
}

// Run a launch of `invoke(body)` (one type-erased body: one copy of this code for all kernels).
inline void launch_erased(cudaStream_t config, dim3 grid, dim3 block, void (*invoke)(void*), void* body) {
  const uint64_t launch_seed = config->seed * 0x100000001B3ull + (uint64_t)(++config->launches);
  const int64_t total = (int64_t)grid.x * grid.y * grid.z;
  std::vector<int64_t> order(total);
  std::iota(order.begin(), order.end(), (int64_t)0);
  if (config->shuffle) {
    Rng rng{launch_seed};
    for (int64_t i = total - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
  }
  int32_t error = 0;
  int64_t yields = 0;
#pragma omp parallel for schedule(dynamic) num_threads(config->threads) reduction(+ : yields)
  for (int64_t i = 0; i < total; ++i) {
    Block& b = this_thread_block();
    running = &b;
    const int64_t id = order[i];
    b.block_idx = dim3(id % grid.x, (id / grid.x) % grid.y, id / ((int64_t)grid.x * grid.y));
    b.block_dim = block;
    b.grid_dim = grid;
    b.invoke = invoke;
    b.body = body;
    b.shuffle = config->shuffle != 0;
    b.rng = Rng{launch_seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(id + 1))};
    b.error = 0;
    b.yields = 0;
    run_block(b);
    yields += b.yields;
    if (b.error) {
#pragma omp critical(gc_emu_error)
      if (!error) error = b.error;
    }
  }
  config->blocks += total;
  config->yields += yields;
  if (error && !last_error) last_error = error;
}

template <class F>
void launch(cudaStream_t config, dim3 grid, dim3 block, F body) {
  launch_erased(config, grid, block, [](void* p) { (*static_cast<F*>(p))(); }, &body);
}

}  // namespace gc_emu

inline cudaError_t cudaGetLastError() {
  const int32_t e = gc_emu::last_error;
  gc_emu::last_error = 0;
  return (cudaError_t)e;
}

inline void __syncthreads() { gc_emu::syncthreads(); }

template <typename T>
inline T atomicAdd(T* address, T value) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "atomicAdd on 4- or 8-byte values");
  gc_emu::maybe_yield();
  using Bits = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  Bits* bits = reinterpret_cast<Bits*>(address);
  Bits seen = __atomic_load_n(bits, __ATOMIC_RELAXED);
  while (true) {
    T old, sum;
    std::memcpy(&old, &seen, sizeof(T));
    sum = old + value;
    Bits next;
    std::memcpy(&next, &sum, sizeof(T));
    if (__atomic_compare_exchange_n(bits, &seen, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}

template <typename A, typename B>
inline std::common_type_t<A, B> min(A a, B b) { return b < a ? b : a; }
template <typename A, typename B>
inline std::common_type_t<A, B> max(A a, B b) { return a < b ? b : a; }

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define threadIdx (::gc_emu::running->current->tid)
#define blockIdx (::gc_emu::running->block_idx)
#define blockDim (::gc_emu::running->block_dim)
#define gridDim (::gc_emu::running->grid_dim)
#define GC_LAUNCH(kernel, grid, block, stream, ...) \
  ::gc_emu::launch(stream, dim3(grid), dim3(block), [&]() { kernel(__VA_ARGS__); })
