"""The layout constants match the authors' columns and the paper's Table 1."""

import pytest

import edge
from edge.errors import DataError
from edge.layout import CLASS_NAMES, CSV_COLUMNS, SENSORS, class_index, risk_of_zone


def test_channels_are_the_authors_columns_in_order():
    assert len(edge.CHANNELS) == 36
    assert edge.CHANNELS[:7] == ("Side_A_x", "Side_A_y", "Side_A_z", "Side_G_x", "Side_G_y", "Side_G_z", "LtWt_A_x")
    assert edge.CHANNELS[-1] == "Thig_G_z"
    assert SENSORS == ("Side", "LtWt", "RtWt", "Back", "UArm", "Thig")
    assert CSV_COLUMNS[-1] == "Time_stp"


def test_zone_risk_is_table_1():
    assert {z for z, r in edge.ZONE_RISK.items() if r == "low"} == {4, 5}
    assert {z for z, r in edge.ZONE_RISK.items() if r == "medium"} == {6, 7, 8, 9}
    assert {z for z, r in edge.ZONE_RISK.items() if r == "high"} == {1, 2, 3, 10, 11, 12}
    assert CLASS_NAMES == ("low", "medium", "high")
    assert class_index("high") == 2


@pytest.mark.parametrize("bad", [0, 13, "x", None])
def test_unknown_zone_is_named(bad):
    with pytest.raises(DataError, match="not an ACGIH zone"):
        risk_of_zone(bad)
