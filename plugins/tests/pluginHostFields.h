/*
 * Plugin attributes as TensorRT hands them to a creator: built the way the ONNX parser builds them
 * from a node's attributes, and copied the way an engine keeps getFieldsToSerialize() (by value:
 * when the engine is deserialised the plugin that produced them is long gone).
 */
#pragma once

#include "NvInferRuntime.h"
#include "pluginHostTensors.h"

#include <list>
#include <stdexcept>
#include <string>
#include <vector>

namespace host
{

//! A PluginFieldCollection that owns its names and values.
class Fields
{
public:
    Fields() = default;
    Fields(Fields const&) = delete;
    Fields& operator=(Fields const&) = delete;

    //! ONNX FLOAT/FLOATS: kFLOAT32, one value per element.
    Fields& floats(std::string name, std::vector<float> values)
    {
        mFloats.push_back(std::move(values));
        return add(std::move(name), mFloats.back().data(), nvinfer1::PluginFieldType::kFLOAT32,
            mFloats.back().size());
    }

    //! ONNX INT/INTS: kINT32 (the parser narrows int64 attributes).
    Fields& ints(std::string name, std::vector<int32_t> values)
    {
        mInts.push_back(std::move(values));
        return add(std::move(name), mInts.back().data(), nvinfer1::PluginFieldType::kINT32, mInts.back().size());
    }

    //! ONNX STRING: kCHAR, the characters and their terminating '\0'.
    Fields& text(std::string name, std::string value)
    {
        mTexts.push_back(std::move(value));
        return add(std::move(name), mTexts.back().c_str(), nvinfer1::PluginFieldType::kCHAR, mTexts.back().size() + 1);
    }

    //! A field exactly as given (for malformed ones); its name and data are not copied.
    Fields& raw(nvinfer1::PluginField const& field)
    {
        mFields.push_back(field);
        return *this;
    }

    nvinfer1::PluginFieldCollection const* collection()
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    Fields& add(std::string name, void const* data, nvinfer1::PluginFieldType type, size_t length)
    {
        mNames.push_back(std::move(name));
        mFields.emplace_back(mNames.back().c_str(), data, type, static_cast<int32_t>(length));
        return *this;
    }

    // Lists: adding an element never moves the ones the fields point to.
    std::list<std::string> mNames;
    std::list<std::vector<float>> mFloats;
    std::list<std::vector<int32_t>> mInts;
    std::list<std::string> mTexts;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! The fields the ONNX parser passes for a ReweightArgmax node with these attributes (except the
//! one named `omitted`): the creator's field names in getFieldNames() order, then the node's
//! plugin_version and plugin_namespace strings.
inline void addOnnxAttributes(Fields& fields, Attributes const& a, std::string const& omitted = "")
{
    auto const ints = [&](char const* name, int32_t value) {
        if (omitted != name)
        {
            fields.ints(name, {value});
        }
    };
    if (omitted != "weights")
    {
        fields.floats("weights", a.weights);
    }
    ints("out_height", a.outHeight);
    ints("out_width", a.outWidth);
    ints("align_corners", a.alignCorners);
    ints("pack4", a.pack4);
    ints("mode", a.mode);
    fields.text("plugin_version", "1").text("plugin_namespace", "dannet");
}

//! A by-value copy of a collection, as an engine stores one; throws on a field type it cannot size.
inline void copyFields(Fields& copy, nvinfer1::PluginFieldCollection const& fc)
{
    for (int32_t i = 0; i < fc.nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc.fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        switch (f.type)
        {
        case nvinfer1::PluginFieldType::kFLOAT32:
        {
            auto const* values = static_cast<float const*>(f.data);
            copy.floats(name, std::vector<float>(values, values + f.length));
            break;
        }
        case nvinfer1::PluginFieldType::kINT32:
        {
            auto const* values = static_cast<int32_t const*>(f.data);
            copy.ints(name, std::vector<int32_t>(values, values + f.length));
            break;
        }
        default: throw std::runtime_error("field '" + name + "' has a type this host does not serialise");
        }
    }
}

} // namespace host
