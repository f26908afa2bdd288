// CUDA XLA FFI handlers: forward and fused deterministic backward of the
// shift, on the stream XLA provides. Decoding and checks are shared with the
// CPU handlers (ffi_common.h); the formulas are shift_core.h's and walks.h's.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_util.cuh"
#include "ffi_common.h"
#include "walk_kernels.h"

namespace jaxshift {
namespace {

// Position of element `idx` of a (N, *grid, C) or (N, C, *grid) tensor.
template <typename I>
struct Pos {
  I n, c;
  int p[3];
};

template <typename I>
__device__ __forceinline__ Pos<I> decompose(I idx, I C, const int* len, bool channels_last) {
  Pos<I> r;
  if (channels_last) {
    r.c = idx % C;
    idx /= C;
  }
  r.p[2] = static_cast<int>(idx % len[2]);
  idx /= len[2];
  r.p[1] = static_cast<int>(idx % len[1]);
  idx /= len[1];
  r.p[0] = static_cast<int>(idx % len[0]);
  idx /= len[0];
  if (!channels_last) {
    r.c = idx % C;
    idx /= C;
  }
  r.n = idx;
  return r;
}

using v1::load_tables;

// One thread per element, in memory order: outputs (forward: interpolate or
// move, coalesced stores; neighbouring threads read neighbouring taps) or
// inputs (adjoint: a gather over the outputs that read it, no atomics).
enum ElementOp { kInterpolate, kMoveOp, kAdjoint };

template <typename T, int P, int kOp, typename I>
__global__ void elementwise_kernel(Geometry geo, const T* __restrict__ src,
                                   const int32_t* __restrict__ m,
                                   const typename Acc<T>::type* __restrict__ f, T* __restrict__ dst,
                                   I total, bool channels_last) {
  using A = typename Acc<T>::type;
  constexpr bool kOut = kOp != kAdjoint;  // iterate the output grid
  const int len[3] = {kOut ? geo.ax[0].Lo : geo.ax[0].L, kOut ? geo.ax[1].Lo : geo.ax[1].L,
                      kOut ? geo.ax[2].Lo : geo.ax[2].L};
  for (I idx = blockIdx.x * static_cast<I>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<I>(gridDim.x) * blockDim.x) {
    const Pos<I> q = decompose<I>(idx, static_cast<I>(geo.C), len, channels_last);
    int mo[3];
    A fo[3];
    load_tables(geo, m, f, q.n, q.c, mo, fo);
    if (kOp == kAdjoint) {
      const T* gc = src + q.n * geo.sy_n + q.c * geo.sy_c;
      store(dst + idx, adjoint_value<P, A>(gc, geo.ax, q.p, mo, fo));
      continue;
    }
    const T* xc = src + q.n * geo.sx_n + q.c * geo.sx_c;
    if (kOp == kMoveOp && !nan_shift(fo)) {
      const T* from = move_source<P>(xc, geo.ax, q.p, mo);
      if (from) {
        copy_element(dst + idx, from);
      } else {
        store(dst + idx, A(0));
      }
    } else {
      store(dst + idx, forward_value<P, A>(xc, geo.ax, q.p, mo, fo));
    }
  }
}


// Launches elementwise_kernel with 32-bit index math where the tensor allows.
template <typename T, int P, int kOp>
void launch_elementwise(cudaStream_t stream, const Geometry& geo, const T* src, const int32_t* m,
                        const typename Acc<T>::type* f, T* dst, int64_t total,
                        bool channels_last) {
  if (fits_int32(total)) {
    elementwise_kernel<T, P, kOp, int32_t><<<grid_for(total), kThreads, 0, stream>>>(
        geo, src, m, f, dst, static_cast<int32_t>(total), channels_last);
  } else {
    elementwise_kernel<T, P, kOp, int64_t><<<grid_for(total), kThreads, 0, stream>>>(
        geo, src, m, f, dst, total, channels_last);
  }
}

// Shift gradient, stage 1: block (chunk, channel tile, sample) sums
// g * d out / d s over kChunk output positions of kLanes channels, reducing
// its threads in a fixed order. Lanes along the contiguous axis of the layout
// (channels for channels-last, positions for channels-first) keep loads
// coalesced.
constexpr int kLanes = 32;    // threads along the contiguous axis
constexpr int kRows = 8;      // threads along the other axis
constexpr int kChunk = 1024;  // output positions per block

template <typename T, int P, bool kChannelsLast>
__global__ void shift_grad_kernel(Geometry geo, const T* __restrict__ x, const T* __restrict__ g,
                                  const int32_t* __restrict__ m,
                                  const typename Acc<T>::type* __restrict__ f,
                                  typename Acc<T>::type* __restrict__ partial, int64_t chunks,
                                  int channels_per_block) {
  using A = typename Acc<T>::type;
  __shared__ A red[kRows][kLanes][3];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t chunk = blockIdx.x;
  // Channels-last: tx = channel lane, ty = position lane; else the reverse.
  const int c_lane = kChannelsLast ? tx : ty;
  const int p_lane = kChannelsLast ? ty : tx;
  const int p_step = kChannelsLast ? kRows : kLanes;
  const int lo1 = geo.ax[1].Lo, lo2 = geo.ax[2].Lo;
  const int64_t S = static_cast<int64_t>(geo.ax[0].Lo) * lo1 * lo2;
  const int64_t cblocks = (geo.C + channels_per_block - 1) / channels_per_block;
  // Grid-stride over samples (z) and channel blocks (y): any N and C.
  for (int64_t n = blockIdx.z; n < geo.N; n += gridDim.z) {
  for (int64_t cb = blockIdx.y; cb < cblocks; cb += gridDim.y) {
  const int64_t c = cb * channels_per_block + c_lane;
  A s[3] = {A(0), A(0), A(0)};
  if (c < geo.C) {
    int mo[3];
    A fo[3];
    load_tables(geo, m, f, n, c, mo, fo);
    const T* xc = x + n * geo.sx_n + c * geo.sx_c;
    const T* gc = g + n * geo.sy_n + c * geo.sy_c;
    const int64_t end = min(S, (chunk + 1) * kChunk);
    for (int64_t p = chunk * kChunk + p_lane; p < end; p += p_step) {
      int o[3];
      o[2] = static_cast<int>(p % lo2);
      o[1] = static_cast<int>((p / lo2) % lo1);
      o[0] = static_cast<int>(p / (static_cast<int64_t>(lo2) * lo1));
      const A gv = load<A>(gc + o[0] * geo.ax[0].sy + o[1] * geo.ax[1].sy + o[2] * geo.ax[2].sy);
      A d[3];
      deriv_values<P, A>(xc, geo.ax, o, mo, fo, d);
      s[0] += gv * d[0];
      s[1] += gv * d[1];
      s[2] += gv * d[2];
    }
  }
  for (int a = 0; a < 3; ++a) red[ty][tx][a] = s[a];
  __syncthreads();
  // Fixed-order reduction over the position lanes of each channel lane.
  if (p_lane == 0 && c < geo.C) {
    A t[3] = {A(0), A(0), A(0)};
    for (int l = 0; l < (kChannelsLast ? kRows : kLanes); ++l) {
      for (int a = 0; a < 3; ++a) t[a] += kChannelsLast ? red[l][tx][a] : red[ty][l][a];
    }
    A* out = partial + ((n * chunks + chunk) * geo.C + c) * 3;
    for (int a = 0; a < 3; ++a) out[a] = t[a];
  }
  __syncthreads();  // red is reused by the next (n, channel block)
  }
  }
}


// ---------------------------------------------------------------------------
// Walk kernels (at most two spatial axes, unit strides; see walks.h and
// walk_kernels.h).
using v1::kWalkRows;

__device__ __forceinline__ v1::Index this_index() {
  return v1::Index{{blockIdx.x, blockIdx.y, blockIdx.z}, {gridDim.x, gridDim.y, gridDim.z},
                   static_cast<int>(threadIdx.x), static_cast<int>(threadIdx.y)};
}

template <typename T, int P, bool kChannelsLast>
__global__ void forward_walk_kernel(Geometry geo, const T* __restrict__ x,
                                    const int32_t* __restrict__ m,
                                    const typename Acc<T>::type* __restrict__ f,
                                    T* __restrict__ y, bool move) {
  v1::forward_walk_thread<T, P, kChannelsLast>(geo, x, m, f, y, move, this_index());
}

template <typename T, int P, bool kChannelsLast>
__global__ void backward_walk_kernel(Geometry geo, const T* __restrict__ x,
                                     const T* __restrict__ g, const int32_t* __restrict__ m_r,
                                     const typename Acc<T>::type* __restrict__ f_r,
                                     const int32_t* __restrict__ m_u,
                                     const typename Acc<T>::type* __restrict__ f_u,
                                     T* __restrict__ dx, typename Acc<T>::type* __restrict__ partial,
                                     int64_t parts, bool shift_grad) {
  using A = typename Acc<T>::type;
  __shared__ A red[kWalkRows][kLanes][2];
  const int64_t outer =
      kChannelsLast ? geo.N : geo.N * ((geo.C + kWalkRows - 1) / kWalkRows);
  const int64_t first = kChannelsLast ? blockIdx.z : blockIdx.x;
  const int64_t step = kChannelsLast ? gridDim.z : gridDim.x;
  const int af = kChannelsLast ? 1 : 2, aw = kChannelsLast ? 2 : 1;
  for (int64_t u = first; u < outer; u += step) {
    const v1::WalkJob j = kChannelsLast ? v1::job_channels_last(geo, this_index(), u, false)
                                        : v1::job_channels_first(geo, this_index(), u, false);
    A d[2] = {A(0), A(0)};
    if (j.valid) {
      int mr[3], mu[3];
      A fr[3], fu[3];
      load_tables(geo, m_r, f_r, j.n, j.c, mr, fr);
      load_tables(geo, m_u, f_u, j.n, j.c, mu, fu);
      const T* xc = x + j.n * geo.sx_n + j.c * geo.sx_c;
      const T* gc = g + j.n * geo.sy_n + j.c * geo.sy_c;
      T* dc = dx + j.n * geo.sx_n + j.c * geo.sx_c;
      if (nan_shift(fr)) {  // (shift_grad_finish fills ds)
        for (int i = j.begin; i < j.end; ++i)
          store(dc + j.fixed * geo.ax[af].sx + i * geo.ax[aw].sx, nan_value(fr));
      } else {
        backward_walk<P, A>(xc, gc, dc, geo.ax, af, aw, j.fixed, j.begin, j.end, mr, fr, mu, fu,
                            shift_grad, d);
      }
    }
    if (!shift_grad) continue;
    red[threadIdx.y][threadIdx.x][0] = d[0];
    red[threadIdx.y][threadIdx.x][1] = d[1];
    __syncthreads();
    // Fixed-order reduction: over rows (ty) per channel for channels-last, over
    // the whole block (one channel) for channels-first.
    if (kChannelsLast) {
      if (threadIdx.y == 0 && j.c < geo.C) {
        A t0 = A(0), t1 = A(0);
        for (int l = 0; l < kWalkRows; ++l) {
          t0 += red[l][threadIdx.x][0];
          t1 += red[l][threadIdx.x][1];
        }
        A* out = partial + ((j.n * parts + blockIdx.x) * geo.C + j.c) * 3;
        out[0] = A(0);
        out[af] = t0;
        out[aw] = t1;
      }
    } else if (threadIdx.x == 0 && j.c < geo.C) {  // over the columns of channel ty
      A t0 = A(0), t1 = A(0);
      for (int k = 0; k < kLanes; ++k) {
        t0 += red[threadIdx.y][k][0];
        t1 += red[threadIdx.y][k][1];
      }
      A* out = partial + ((j.n * parts + blockIdx.y) * geo.C + j.c) * 3;
      out[0] = A(0);
      out[af] = t0;
      out[aw] = t1;
    }
    __syncthreads();
  }
}

// The walk kernels index channel blocks (channels-last) or column blocks
// (channels-first) by blockIdx.y without a loop; beyond that grid limit the
// element-wise kernels (grid-stride loops) serve the call.
inline bool use_walks(const Geometry& geo, bool channels_last) {
  const int64_t y_blocks = channels_last ? (geo.C + kLanes - 1) / kLanes
                                         : (geo.ax[2].L + kLanes - 1) / kLanes;
  return walkable(geo) && y_blocks <= 65535;
}

struct ForwardCuda {
  template <typename T, int P>
  static ffi::Error Run(cudaStream_t stream, const Geometry& geo, const void* x, const int32_t* m,
                        const void* f, void* y, int64_t total, bool channels_last, bool move) {
    using A = typename Acc<T>::type;
    const T* xs = static_cast<const T*>(x);
    const A* fs = static_cast<const A*>(f);
    T* ys = static_cast<T*>(y);
    if (use_walks(geo, channels_last)) {
      const dim3 block(kLanes, kWalkRows);
      int64_t g[3];
      v1::forward_grid(geo, channels_last, g);
      const dim3 grid(static_cast<unsigned>(g[0]), static_cast<unsigned>(g[1]),
                      static_cast<unsigned>(g[2]));
      if (channels_last) {
        forward_walk_kernel<T, P, true><<<grid, block, 0, stream>>>(geo, xs, m, fs, ys, move);
      } else {
        forward_walk_kernel<T, P, false><<<grid, block, 0, stream>>>(geo, xs, m, fs, ys, move);
      }
      return last_error("forward (walk)");
    }
    if (move) {
      launch_elementwise<T, P, kMoveOp>(stream, geo, xs, m, fs, ys, total, channels_last);
    } else {
      launch_elementwise<T, P, kInterpolate>(stream, geo, xs, m, fs, ys, total, channels_last);
    }
    return last_error("forward");
  }
};

struct BackwardCuda {
  template <typename T, int P>
  static ffi::Error Run(cudaStream_t stream, const Geometry& geo, const void* x, const void* g,
                        const int32_t* m_r, const void* f_r, const int32_t* m_u, const void* f_u,
                        void* dx, void* ds, void* scratch, int64_t chunks, bool channels_last,
                        bool shift_grad) {
    using A = typename Acc<T>::type;
    const T* xs = static_cast<const T*>(x);
    const T* gs = static_cast<const T*>(g);
    const int64_t nds = geo.N * geo.C * 3;
    if (use_walks(geo, channels_last)) {
      const dim3 block(kLanes, kWalkRows);
      A* partial = static_cast<A*>(scratch);
      int64_t parts;
      if (channels_last) {
        parts = (geo.ax[1].L + kWalkRows - 1) / kWalkRows;
        const dim3 grid(static_cast<unsigned>(parts),
                        static_cast<unsigned>((geo.C + kLanes - 1) / kLanes), capped(geo.N, 65535));
        backward_walk_kernel<T, P, true><<<grid, block, 0, stream>>>(
            geo, xs, gs, m_r, static_cast<const A*>(f_r), m_u, static_cast<const A*>(f_u),
            static_cast<T*>(dx), partial, parts, shift_grad);
      } else {
        parts = (geo.ax[2].L + kLanes - 1) / kLanes;
        const int64_t ncb = geo.N * ((geo.C + kWalkRows - 1) / kWalkRows);
        const dim3 grid(static_cast<unsigned>(ncb < (1 << 30) ? ncb : (1 << 30)),
                        static_cast<unsigned>(parts));
        backward_walk_kernel<T, P, false><<<grid, block, 0, stream>>>(
            geo, xs, gs, m_r, static_cast<const A*>(f_r), m_u, static_cast<const A*>(f_u),
            static_cast<T*>(dx), partial, parts, shift_grad);
      }
      if (auto e = last_error("backward (walk)"); e.failure()) return e;
      if (!shift_grad) {
        fill_zero<A><<<static_cast<int>((nds + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
            static_cast<A*>(ds), nds);
        return last_error("fill");
      }
      shift_grad_finish<A><<<static_cast<int>((nds + kThreads - 1) / kThreads), kThreads, 0,
                             stream>>>(geo, partial, parts, static_cast<const A*>(f_u),
                                       static_cast<A*>(ds));
      return last_error("shift gradient (finish)");
    }
    const int64_t total = geo.N * geo.C * geo.ax[0].L * static_cast<int64_t>(geo.ax[1].L) *
                          geo.ax[2].L;
    launch_elementwise<T, P, kAdjoint>(stream, geo, gs, m_r, static_cast<const A*>(f_r),
                                       static_cast<T*>(dx), total, channels_last);
    if (auto e = last_error("input gradient"); e.failure()) return e;
    A* dss = static_cast<A*>(ds);
    if (!shift_grad) {
      fill_zero<A><<<static_cast<int>((nds + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
          dss, nds);
      return last_error("fill");
    }
    const int cpb = channels_last ? kLanes : kRows;
    const dim3 block(kLanes, kRows);
    // Grid-stride in y (channel blocks) and z (samples): any C and N.
    const dim3 grid3(static_cast<unsigned>(chunks), capped((geo.C + cpb - 1) / cpb, 65535),
                     capped(geo.N, 65535));
    A* partial = static_cast<A*>(scratch);
    if (channels_last) {
      shift_grad_kernel<T, P, true><<<grid3, block, 0, stream>>>(
          geo, xs, gs, m_u, static_cast<const A*>(f_u), partial, chunks, cpb);
    } else {
      shift_grad_kernel<T, P, false><<<grid3, block, 0, stream>>>(
          geo, xs, gs, m_u, static_cast<const A*>(f_u), partial, chunks, cpb);
    }
    if (auto e = last_error("shift gradient"); e.failure()) return e;
    shift_grad_finish<A><<<static_cast<int>((nds + kThreads - 1) / kThreads), kThreads, 0,
                           stream>>>(geo, partial, chunks, static_cast<const A*>(f_u), dss);
    return last_error("shift gradient (finish)");
  }
};

ffi::Error ForwardImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const int64_t total = static_cast<int64_t>(y->element_count());
    return dispatch<ForwardCuda>(x.element_type(), opt.padding, stream, geo, x.untyped_data(),
                                 m.typed_data<int32_t>(), f.untyped_data(), y->untyped_data(),
                                 total, channels_last, move);
  });
}

ffi::Error BackwardImpl(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer x,
                        ffi::AnyBuffer g, ffi::AnyBuffer m_r, ffi::AnyBuffer f_r,
                        ffi::AnyBuffer m_u, ffi::AnyBuffer f_u, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Result<ffi::AnyBuffer> ds, int64_t padding, bool channels_last,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                        bool shift_grad) {
  return backward_call(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last, strides,
                       present, [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const int64_t S = static_cast<int64_t>(geo.ax[0].Lo) * geo.ax[1].Lo * geo.ax[2].Lo;
    const int64_t chunks = (S + kChunk - 1) / kChunk;
    // Partial sums: per chunk (general kernel) or per walk block.
    const int64_t walk_parts = channels_last ? (geo.ax[1].L + kWalkRows - 1) / kWalkRows
                                             : (geo.ax[2].L + kLanes - 1) / kLanes;
    const int64_t parts = use_walks(geo, channels_last) ? walk_parts : chunks;
    void* partial = nullptr;
    if (shift_grad) {
      const size_t bytes = static_cast<size_t>(geo.N * parts * geo.C * 3) *
                           (x.element_type() == ffi::DataType::F64 ? 8 : 4);
      auto mem = scratch.Allocate(bytes);
      if (!mem.has_value()) return ffi::Error::Internal("jaxshift: scratch allocation failed");
      partial = mem.value();
    }
    return dispatch<BackwardCuda>(x.element_type(), opt.padding, stream, geo, x.untyped_data(),
                                  g.untyped_data(), m_r.typed_data<int32_t>(), f_r.untyped_data(),
                                  m_u.typed_data<int32_t>(), f_u.untyped_data(),
                                  dx->untyped_data(), ds->untyped_data(), partial, chunks,
                                  channels_last, shift_grad);
  });
}

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_forward_cuda, jaxshift::ForwardImpl,
    jaxshift::forward_signature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>()),
    {ffi::Traits::kCmdBufferCompatible});
// Not command-buffer compatible: it asks XLA's scratch allocator for memory.
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_backward_cuda, jaxshift::BackwardImpl,
    jaxshift::backward_signature(ffi::Ffi::Bind()
                                     .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                     .Ctx<ffi::ScratchAllocator>()));

JAXSHIFT_EXPORT_HANDLER(cuda, forward)
JAXSHIFT_EXPORT_HANDLER(cuda, backward)
