/*
 * TensorRT stand-in (tests only; see NvInferVersion.h): the implementation classes behind the
 * dimension-expression API. In TensorRT, IDimensionExpr and IExprBuilder are non-virtual wrappers
 * that forward to these apiv:: classes, which libnvinfer implements; the test host implements them.
 * Real headers take precedence.
 */
#pragma once

#include "NvInferRuntimeCommon.h"

namespace nvinfer1
{

class IDimensionExpr;
enum class DimensionOperation : int32_t;

namespace apiv
{

class VRoot
{
public:
    virtual ~VRoot() noexcept = default;
};

class VDimensionExpr : public VRoot
{
public:
    virtual bool isConstant() const = 0;
    virtual int64_t getConstantValue() const = 0;
    virtual bool isSizeTensor() const = 0;
};

class VExprBuilder : public VRoot
{
public:
    virtual IDimensionExpr const* constant(int64_t value) = 0;
    virtual IDimensionExpr const* operation(
        DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second)
        = 0;
    virtual IDimensionExpr const* declareSizeTensor(
        int32_t outputIndex, IDimensionExpr const& opt, IDimensionExpr const& upper)
        = 0;
};

} // namespace apiv
} // namespace nvinfer1
