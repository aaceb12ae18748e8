import vit_transfer


def test_every_public_name_resolves():
    for name in vit_transfer.__all__:
        assert getattr(vit_transfer, name) is not None, name


def test_unknown_attribute_raises():
    import pytest

    with pytest.raises(AttributeError):
        vit_transfer.not_a_name
