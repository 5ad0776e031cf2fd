/*
 * CPU stand-in for what nvcc makes available to every .cu file (CUDA's cuda_runtime.h): the kernel
 * language, as far as the ReweightArgmax kernels and the tests use it, on top of the runtime API of
 * cuda_runtime_api.h. With it the host C++ compiler compiles kernel sources unchanged and runs them:
 *   qualifiers   __global__, __device__ (nothing), __forceinline__ (inline), __launch_bounds__
 *                (ignored), __shared__ (one static array, shared by the threads of the block that
 *                runs: blocks run one at a time, launches one at a time)
 *   built-ins    threadIdx, blockIdx, __syncthreads() (blockScheduler.h: a barrier that not every
 *                live thread of the block reaches aborts, as it is undefined on a GPU)
 *   intrinsics   __ldg (bounds-checked against the cudaMalloc allocations: a load outside them
 *                prints the address and the thread and aborts), min, __fmul_rn, __fadd_rn,
 *                __fdiv_rn (each rounded on its own, never contracted into a fused multiply-add),
 *                __fmaf_rn (for the mutation test's fused kernel); the math functions (expf) are
 *                the host C library's
 *   fp16         cudaEmulation::halfBitsToFloat: what the kernel's inline PTX cvt.f32.f16 computes
 *                (the kernel names it where the emulation compiles it: asm cannot run here)
 *   launch       cudaLaunchKernel(kernel, grid, block, args, sharedMem, stream), CUDA's C++ form:
 *                checks the configuration as CUDA does (cudaErrorInvalidConfiguration for an
 *                empty grid or a block of more than 1024 threads), copies the arguments, runs
 *                the grid before it returns (blockScheduler.h: the schedule that exposes races)
 *                and records the stream it was given (cudaEmulation::streamRecord)
 * Global stores are plain stores: build with AddressSanitizer (exactly sized allocations) and
 * UndefinedBehaviorSanitizer (alignment of int4 and other vector stores) to check them.
 * Shared memory is not poisoned between blocks: `__shared__` is a prefix of a declaration whose
 * name the emulation never sees, so it cannot reach the array without a change to the kernel.
 */
#pragma once

#include "blockScheduler.h"
#include "cuda_runtime_api.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

template <typename T>
T __ldg(T const* address)
{
    if (!cudaEmulation::deviceMemory().contains(address, sizeof(T)))
    {
        std::fprintf(stderr,
            "cudaEmulation: __ldg of %zu bytes at %p is not inside any cudaMalloc allocation "
            "(block %u,%u,%u thread %u,%u,%u)\n",
            sizeof(T), static_cast<void const*>(address), blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x,
            threadIdx.y, threadIdx.z);
        std::abort();
    }
    return *address;
}

inline int min(int a, int b)
{
    return a < b ? a : b;
}

// The volatile forces each result to be rounded to float on its own, whatever -ffp-contract says.
inline float __fmul_rn(float a, float b)
{
    float volatile product = a * b;
    return product;
}

inline float __fadd_rn(float a, float b)
{
    float volatile sum = a + b;
    return sum;
}

inline float __fdiv_rn(float a, float b)
{
    float volatile quotient = a / b;
    return quotient;
}

inline float __fmaf_rn(float a, float b, float c)
{
    return std::fma(a, b, c);
}

namespace cudaEmulation
{

//! fp16 bits -> float, exactly (every half is a float): the emulation's cvt.f32.f16. The tests
//! compute what the kernel must output with a decoder of their own (testSupport.h).
inline float halfBitsToFloat(unsigned short bits)
{
    unsigned int const exponent = (bits >> 10) & 0x1Fu;
    unsigned int const mantissa = bits & 0x3FFu;
    float magnitude;
    if (exponent == 0x1Fu)
    {
        magnitude = mantissa == 0 ? __builtin_inff() : __builtin_nanf("");
    }
    else if (exponent == 0)
    {
        magnitude = static_cast<float>(mantissa) * 0x1p-24f; // subnormal: mantissa * 2^-24
    }
    else
    {
        // (1024 + mantissa) * 2^(exponent - 25): both factors and the product are exact in float
        magnitude = static_cast<float>(1024u + mantissa) * (static_cast<float>(1u << exponent) * 0x1p-25f);
    }
    return (bits & 0x8000u) != 0 ? -magnitude : magnitude;
}

//! CUDA's limits (every GPU since compute capability 3.0).
inline bool validLaunch(dim3 grid, dim3 block)
{
    unsigned long long const threads = static_cast<unsigned long long>(block.x) * block.y * block.z;
    return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535u
        && grid.z <= 65535u && block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024u
        && block.y <= 1024u && block.z <= 64u && threads <= 1024u;
}

//! One launch at a time: __shared__ arrays are statics that one block at a time may use.
inline std::mutex& launchMutex()
{
    static std::mutex mutex;
    return mutex;
}

template <typename... Params, size_t... I>
void runGrid(void (*kernel)(Params...), dim3 grid, dim3 block, void** args, std::index_sequence<I...>)
{
    // The arguments are copied at launch, as CUDA does; every thread receives its own copy of them.
    std::tuple<std::decay_t<Params>...> const values{*static_cast<std::decay_t<Params>*>(args[I])...};
    std::function<void()> const body = [&] { kernel(std::get<I>(values)...); };
    std::lock_guard<std::mutex> lock(launchMutex());
    blockScheduler().run(grid, block, body);
}

} // namespace cudaEmulation

template <typename... Params>
cudaError_t cudaLaunchKernel(void (*kernel)(Params...), dim3 grid, dim3 block, void** args, size_t sharedMem = 0,
    cudaStream_t stream = nullptr)
{
    if (kernel == nullptr)
    {
        return cudaEmulation::report(cudaErrorInvalidValue);
    }
    if (!cudaEmulation::validLaunch(grid, block))
    {
        return cudaEmulation::report(cudaErrorInvalidConfiguration);
    }
    if (sharedMem != 0)
    {
        return cudaEmulation::report(cudaErrorNotSupported); // no dynamic shared memory in this emulation
    }
    cudaEmulation::runGrid(kernel, grid, block, args, std::index_sequence_for<Params...>{});
    cudaEmulation::streamRecord().launches.push_back(stream);
    return cudaSuccess;
}
