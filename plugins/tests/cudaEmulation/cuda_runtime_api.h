/*
 * CPU stand-in for the CUDA runtime API header, for tests on machines without a GPU or libcudart.
 * Put plugins/tests/cudaEmulation FIRST on the include path and `#include <cuda_runtime_api.h>`
 * (TensorRT's NvInferRuntimeBase.h does) finds this file instead of CUDA's. Header-only.
 *
 * It declares what the ReweightArgmax launcher, the tests and TensorRT's headers use, with CUDA's
 * names, signatures and error values (code that compiles against it compiles against the real
 * header), and nothing more: a test that starts using more of CUDA fails to compile here instead
 * of running against an emulation nobody checked.
 *   types      cudaError_t (enum cudaError), cudaMemcpyKind (host to device, device to host),
 *              cudaStream_t (CUstream_st*), cudaEvent_t (only named: TensorRT's headers declare
 *              methods that take one), dim3, uint3, int4 (16-byte aligned) + make_int4
 *   memory     cudaMalloc, cudaFree, cudaMemcpy
 *   streams    cudaStreamCreate, cudaStreamDestroy, cudaStreamSynchronize
 *   device     cudaDeviceSynchronize (only so that code waiting for the whole device compiles and
 *              is seen doing it: see streamRecord)
 *   errors     cudaGetLastError, cudaGetErrorName
 * Kernels are written and launched through cuda_runtime.h (beside this file), which a .cu file
 * compiled by the host compiler includes where nvcc would include CUDA's implicitly.
 *
 * Semantics:
 *  - "device" memory is host memory: cudaMalloc makes an exactly sized, 256-byte aligned heap block
 *    (so AddressSanitizer reports a store one byte past it), filled with 0xCD as a stand-in for the
 *    garbage a fresh GPU allocation holds, and records it; kernels' __ldg loads and cudaMemcpy
 *    check their device ranges against those records;
 *  - everything is synchronous: a launch has finished when cudaLaunchKernel returns, so stream
 *    synchronisation only reports success; streams are opaque handles;
 *  - what a GPU cannot show is recorded per host thread (cudaEmulation::streamRecord): the stream of
 *    each launch that ran and how often the thread waited for a stream or the device, so that a
 *    test sees whether code ran its work on the stream it was given and returned without waiting
 *    (TensorRT's enqueue contract), which the synchronous emulation would otherwise hide;
 *  - errors are returned and also kept per host thread for cudaGetLastError, as CUDA does.
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

enum cudaError
{
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotSupported = 801
};
typedef enum cudaError cudaError_t;

enum cudaMemcpyKind
{
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2
};

struct CUstream_st
{
};
typedef struct CUstream_st* cudaStream_t;
struct CUevent_st; // TensorRT's headers name cudaEvent_t in declarations; nothing here makes one
typedef struct CUevent_st* cudaEvent_t;

struct uint3
{
    unsigned int x;
    unsigned int y;
    unsigned int z;
};

struct dim3
{
    unsigned int x;
    unsigned int y;
    unsigned int z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
        : x(vx)
        , y(vy)
        , z(vz)
    {
    }
};

//! 16-byte aligned like CUDA's, so that UndefinedBehaviorSanitizer flags a misaligned vector store.
struct alignas(16) int4
{
    int x;
    int y;
    int z;
    int w;
};

inline int4 make_int4(int x, int y, int z, int w)
{
    return int4{x, y, z, w};
}

namespace cudaEmulation
{

//! The emulated device allocations: start address -> size in bytes.
class DeviceMemory
{
public:
    void* allocate(size_t bytes)
    {
        void* memory = nullptr;
        if (posix_memalign(&memory, kAlignment, bytes) != 0)
        {
            return nullptr;
        }
        std::memset(memory, 0xCD, bytes);
        std::lock_guard<std::mutex> lock(mMutex);
        mBlocks[reinterpret_cast<uintptr_t>(memory)] = bytes;
        return memory;
    }

    //! False when ``memory`` is not the start of an allocation (nothing is freed then).
    bool release(void* memory)
    {
        std::lock_guard<std::mutex> lock(mMutex);
        auto const block = mBlocks.find(reinterpret_cast<uintptr_t>(memory));
        if (block == mBlocks.end())
        {
            return false;
        }
        mBlocks.erase(block);
        std::free(memory);
        return true;
    }

    //! Whether [address, address + bytes) lies inside one allocation.
    bool contains(void const* address, size_t bytes) const
    {
        uintptr_t const begin = reinterpret_cast<uintptr_t>(address);
        std::lock_guard<std::mutex> lock(mMutex);
        auto block = mBlocks.upper_bound(begin);
        if (block == mBlocks.begin())
        {
            return false;
        }
        --block;
        return begin - block->first <= block->second && bytes <= block->second - (begin - block->first);
    }

private:
    static constexpr size_t kAlignment = 256; // what cudaMalloc guarantees
    mutable std::mutex mMutex;
    std::map<uintptr_t, size_t> mBlocks;
};

inline DeviceMemory& deviceMemory()
{
    static DeviceMemory memory;
    return memory;
}

inline cudaError_t& lastError()
{
    static thread_local cudaError_t error = cudaSuccess;
    return error;
}

//! Returns ``error`` after recording it for cudaGetLastError (success is not recorded).
inline cudaError_t report(cudaError_t error)
{
    if (error != cudaSuccess)
    {
        lastError() = error;
    }
    return error;
}

//! What one host thread asked of the emulated device's streams, in order.
struct StreamRecord
{
    std::vector<cudaStream_t> launches; //!< the stream of each kernel launch that ran (nullptr: the default stream)
    int streamSynchronizations{0};      //!< cudaStreamSynchronize calls
    int deviceSynchronizations{0};      //!< cudaDeviceSynchronize calls
};

//! The calling host thread's record (per thread, as CUDA's errors are: launches come from threads).
inline StreamRecord& streamRecord()
{
    static thread_local StreamRecord record;
    return record;
}

} // namespace cudaEmulation

inline cudaError_t cudaGetLastError()
{
    cudaError_t const error = cudaEmulation::lastError();
    cudaEmulation::lastError() = cudaSuccess;
    return error;
}

inline char const* cudaGetErrorName(cudaError_t error)
{
    switch (error)
    {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    }
    return "unrecognized error code";
}

inline cudaError_t cudaMalloc(void** devPtr, size_t size)
{
    if (devPtr == nullptr)
    {
        return cudaEmulation::report(cudaErrorInvalidValue);
    }
    *devPtr = size == 0 ? nullptr : cudaEmulation::deviceMemory().allocate(size);
    return size != 0 && *devPtr == nullptr ? cudaEmulation::report(cudaErrorMemoryAllocation) : cudaSuccess;
}

inline cudaError_t cudaFree(void* devPtr)
{
    if (devPtr == nullptr || cudaEmulation::deviceMemory().release(devPtr))
    {
        return cudaSuccess;
    }
    return cudaEmulation::report(cudaErrorInvalidDevicePointer);
}

inline cudaError_t cudaMemcpy(void* dst, void const* src, size_t count, cudaMemcpyKind kind)
{
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost)
    {
        return cudaEmulation::report(cudaErrorInvalidMemcpyDirection);
    }
    if (count == 0)
    {
        return cudaSuccess;
    }
    void const* const device = kind == cudaMemcpyHostToDevice ? dst : src;
    if (dst == nullptr || src == nullptr || !cudaEmulation::deviceMemory().contains(device, count))
    {
        return cudaEmulation::report(cudaErrorInvalidValue);
    }
    std::memmove(dst, src, count);
    return cudaSuccess;
}

inline cudaError_t cudaStreamCreate(cudaStream_t* stream)
{
    if (stream == nullptr)
    {
        return cudaEmulation::report(cudaErrorInvalidValue);
    }
    *stream = new CUstream_st;
    return cudaSuccess;
}

inline cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    if (stream == nullptr)
    {
        return cudaEmulation::report(cudaErrorInvalidResourceHandle);
    }
    delete stream;
    return cudaSuccess;
}

inline cudaError_t cudaStreamSynchronize(cudaStream_t /*stream*/)
{
    ++cudaEmulation::streamRecord().streamSynchronizations;
    return cudaSuccess; // launches and copies complete before they return
}

inline cudaError_t cudaDeviceSynchronize()
{
    ++cudaEmulation::streamRecord().deviceSynchronizations;
    return cudaSuccess;
}

