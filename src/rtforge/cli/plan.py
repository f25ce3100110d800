"""``rtforge plan info|split``, ``rtforge deid`` and ``rtforge relink``."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pydicom import Dataset

from rtforge.cli._common import add_output_flags, emit_json
from rtforge.config import ExportConfig, load_config
from rtforge.io.deid import deidentify, load_trial, new_key, read_key, uid_map_csv
from rtforge.io.dicomfile import read_dicom_file
from rtforge.io.references import check_references, read_folder
from rtforge.io.relink import PatientChange, relink
from rtforge.io.rtplan import Beam, RTPlan, parse_rtplan, split_rtplan, write_rtplan
from rtforge.io.staging import write_objects

__all__ = ["register"]

_PLAN_EXAMPLE = """examples:
  rtforge plan info plan.dcm
  rtforge plan split plan.dcm -o split/   (one RT Plan per fraction group)
"""
_INFO_EXAMPLE = """examples:
  rtforge plan info plan.dcm
  rtforge plan info --json plan.dcm | jq .beams

A plan file without Part 10 meta (a bare data set, as archives hold them) is read and
said on stderr.
"""
_SPLIT_EXAMPLE = """example:
  rtforge plan split plan.dcm -o split/

Writes one RT Plan per fraction group, each referencing its siblings (PARTIAL); a plan
of one fraction group is not split and nothing is written.
"""
_DEID_EXAMPLE = """example:
  rtforge deid export/ trial/ --trial trial.toml --key-file site.key --map-out map.csv

trial.toml holds sponsor_name, protocol_id, subject_id (required) and protocol_name,
site_id, site_name, time_point_id, time_point_description, coordinating_center_name.
The same key file gives the same UIDs on every run (a new key is written if it is missing).
Every DICOM file under IN_DIR is checked first (truncated file, short Pixel Data, non-finite
geometry, broken contours): one damaged file and nothing is written. All or nothing: OUT_DIR
receives the objects only when every one is written (a full disk leaves nothing of the run).
Study Date/Time/ID get dummy values (a DICOMDIR needs them); Patient Name is SUBJECT^.
"""
_RELINK_EXAMPLE = """example:
  rtforge relink in/ out/ --patient-id NEW-1 --patient-name "Roe^Ann" --sex F
Every changed object gets new SOP Instance, Series Instance and Study Instance UIDs (derived
from the old UID and the new patient: a re-run gives the same UIDs) and every reference among
the objects follows; Frame of Reference UIDs stay. --keep-study-uids gives new SOP Instance
UIDs only (Oncentra's behaviour): the studies then exist under two patients.
(RT Dose objects are copied unchanged and reported: they are never re-linked)
Every DICOM file under IN_DIR is checked first (truncated file, short Pixel Data, non-finite
geometry, broken contours): one damaged file and nothing is written. All or nothing: OUT_DIR
receives the objects only when every one is written.
Every object is written in the configured character set (character_set under [export]:
ISO_IR 100 by default, where a name outside Latin-1 is an error, exit 1, nothing written;
ISO_IR 192 writes UTF-8, e.g. --patient-name "Παπαδόπουλος^Γιώργος").
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan``, ``deid`` and ``relink`` subcommands."""
    p = sub.add_parser("plan", help="RT Plan: show, split per fraction group",
                       epilog=_PLAN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    plan_sub = p.add_subparsers(dest="plan_command", metavar="ACTION")
    plan_sub.required = True
    info = plan_sub.add_parser("info", help="summarise an RT Plan", epilog=_INFO_EXAMPLE,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    info.add_argument("rtplan", type=Path, metavar="RTPLAN")
    add_output_flags(info)
    info.set_defaults(func=_info)
    split = plan_sub.add_parser("split", help="one RT Plan per fraction group (PARTIAL siblings)",
                                epilog=_SPLIT_EXAMPLE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    split.add_argument("rtplan", type=Path, metavar="RTPLAN")
    split.add_argument("-o", "--output", type=Path, required=True, metavar="OUT_DIR")
    _add_config(split)
    add_output_flags(split)
    split.set_defaults(func=_split)

    d = sub.add_parser("deid", help="clinical-trial de-identification of a set of objects",
                       epilog=_DEID_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("input", type=Path, metavar="IN_DIR")
    d.add_argument("output", type=Path, metavar="OUT_DIR")
    d.add_argument("--trial", type=Path, required=True, help="TOML file of the trial")
    d.add_argument("--key-file", type=Path, help="secret key (created if missing); "
                                                 "without it a one-off random key is used")
    d.add_argument("--map-out", type=Path, help="write the original-to-new mapping (CSV)")
    d.add_argument("--keep-descriptors", action="store_true",
                   help="PS3.15 Clean Descriptors Option: keep ROI names, ROI/beam/series "
                        "descriptions, protocol names and the other descriptors of its table "
                        "as they are (you vouch they hold no identifying text)")
    d.add_argument("--shift-dates", type=int, metavar="DAYS",
                   help="PS3.15 Modified Dates Option: move every date by DAYS (e.g. -1234) "
                        "instead of removing it, times kept, so intervals such as a source's "
                        "decay since its reference date survive")
    d.add_argument("--verbose", dest="list_outside", action="store_true",
                   help="list every reference to an object outside the set (by default one "
                        "summary line)")
    _add_config(d)
    add_output_flags(d)
    d.set_defaults(func=_deid)

    r = sub.add_parser("relink", help="change patient information and re-link references",
                       epilog=_RELINK_EXAMPLE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("input", type=Path, metavar="IN_DIR")
    r.add_argument("output", type=Path, metavar="OUT_DIR")
    r.add_argument("--patient-id", required=True)
    r.add_argument("--patient-name")
    r.add_argument("--sex", choices=("M", "F", "O"))
    r.add_argument("--birth-date", metavar="YYYYMMDD")
    r.add_argument("--keep-study-uids", action="store_true",
                   help="keep Study and Series Instance UIDs (new SOP Instance UIDs only); "
                        "warns: each study then exists under two patients")
    _add_config(r)
    add_output_flags(r)
    r.set_defaults(func=_relink)


def _read(path: Path) -> Dataset:
    """The plan's data set; a file without Part 10 meta is read and said (stderr)."""
    read = read_dicom_file(path)
    if read.bare:
        sys.stderr.write(f"note: {path} has no Part 10 file meta; read as a bare data set\n")
    return read.ds


def _round(value: float | None, digits: int = 2) -> float | None:
    """A value as a physicist reads it: rounded, and -0.0 as 0 (7.08677e-10 is 0)."""
    return None if value is None else round(value, digits) + 0.0


def _arc(beam: Beam) -> dict[str, object] | None:
    """Start and stop gantry angle and direction of a rotating beam, else None."""
    first, last = beam.control_points[0], beam.control_points[-1]
    if first.gantry_rotation_direction.value == "NONE":
        return None
    return {"start": _round(first.gantry_angle, 1), "stop": _round(last.gantry_angle, 1),
            "direction": first.gantry_rotation_direction.value}


def _meterset(plan: RTPlan) -> dict[int, float | None]:
    """Beam Meterset (MU) of each beam number, from the fraction groups."""
    return {b.beam_number: _round(b.beam_meterset, 1)
            for g in plan.fraction_groups for b in g.referenced_beams}


def _fluence(beam: Beam) -> str:
    return beam.fluence_mode_id or beam.fluence_mode


def _summary(plan: RTPlan) -> dict[str, object]:
    meterset = _meterset(plan)
    return {
        "label": plan.label, "name": plan.name, "description": plan.description,
        "geometry": plan.geometry.value, "patient_id": plan.patient_id,
        "sop_instance_uid": plan.sop_instance_uid,
        "referenced_structure_set": plan.referenced_structure_set_uid,
        "referenced_plans": [list(p) for p in plan.referenced_plans],
        "prescription": [{"number": d.number, "description": d.description,
                          "type": d.dose_reference_type,
                          "dose_gy": d.target_prescription_dose,
                          "constraints": d.constraint_doses} for d in plan.dose_references],
        "fraction_groups": [{"number": g.number, "fractions": g.fractions_planned,
                             "beams": list(g.beam_numbers),
                             "meterset": [b.beam_meterset for b in g.referenced_beams]}
                            for g in plan.fraction_groups],
        "beams": [{"number": b.number, "name": b.name, "type": b.beam_type.value,
                   "radiation": b.radiation_type.value, "machine": b.machine_name,
                   "energy": b.control_points[0].nominal_beam_energy,
                   "gantry": _round(b.control_points[0].gantry_angle),
                   "collimator": _round(b.control_points[0].beam_limiting_device_angle),
                   "couch": _round(b.control_points[0].patient_support_angle),
                   "arc": _arc(b), "fluence_mode": _fluence(b) or None,
                   "meterset": meterset.get(b.number), "meterset_unit": b.primary_dosimeter_unit,
                   "control_points": len(b.control_points),
                   "isocenter": list(b.control_points[0].isocenter_position),
                   "cone": b.cone_id}
                  for b in plan.beams],
        "brachy": None if plan.brachy is None else {
            "technique": plan.brachy.technique.value,
            "type": plan.brachy.treatment_type.value, "machine": plan.brachy.machine_name,
            "sources": [{"number": s.number, "isotope": s.isotope_name,
                         "reference_air_kerma_rate": s.reference_air_kerma_rate}
                        for s in plan.brachy.sources],
            "application_setups": [{"number": a.number, "name": a.name, "type": a.setup_type,
                                    "total_reference_air_kerma": a.total_reference_air_kerma,
                                    "channels": [{"number": c.number,
                                                  "total_time_s": c.total_time,
                                                  "control_points": len(c.control_points)}
                                                 for c in a.channels]}
                                   for a in plan.brachy.setups]},
    }


def _words(keyword: str) -> str:
    """``OrganAtRiskMaximumDose`` -> ``organ at risk maximum dose``."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", keyword).lower()


def _info(args: argparse.Namespace) -> int:
    plan = parse_rtplan(_read(args.rtplan), args.rtplan)
    summary = _summary(plan)
    if args.json:
        emit_json(summary)
        return 0
    print(f"RT Plan {plan.label!r} ({plan.name or 'no name'}), geometry {plan.geometry.value}, "
          f"patient {plan.patient_id or '-'}")
    for dose in plan.dose_references:
        prescribed = dose.target_prescription_dose
        constraints = ", ".join(f"{_words(k)} {v:g}" for k, v in dose.constraint_doses.items())
        print(f"  dose reference {dose.number} ({dose.dose_reference_type}): "
              f"{dose.description or '-'} {'-' if prescribed is None else f'{prescribed:.4g}'} Gy"
              + (f"; {constraints}" if constraints else ""))
    for group in plan.fraction_groups:
        print(f"  fraction group {group.number}: {group.fractions_planned} fractions, "
              f"beams {', '.join(map(str, group.beam_numbers)) or '-'}")
    meterset = _meterset(plan)
    for beam in plan.beams:
        cp = beam.control_points[0]
        arc = _arc(beam)
        where = (f"arc {arc['start']:g} to {arc['stop']:g} {arc['direction']}" if arc
                 else f"gantry {_round(cp.gantry_angle):g}")
        mu = meterset.get(beam.number)
        print(f"  beam {beam.number} {beam.name!r}: {beam.beam_type.value} "
              f"{beam.radiation_type.value} {cp.nominal_beam_energy or '-'} MV"
              f"{' ' + _fluence(beam) if _fluence(beam) else ''} on {beam.machine_name or '-'}, "
              f"{where}, collimator {_round(cp.beam_limiting_device_angle):g}, couch "
              f"{_round(cp.patient_support_angle):g}, "
              f"{'-' if mu is None else f'{mu:g}'} {beam.primary_dosimeter_unit or 'MU'}, "
              f"{len(beam.control_points)} control points")
    if plan.brachy is not None:
        brachy = plan.brachy
        print(f"  brachytherapy: {brachy.treatment_type.value} {brachy.technique.value} on "
              f"{brachy.machine_name or '-'}; sources "
              f"{', '.join(f'{s.number} {s.isotope_name}' for s in brachy.sources)}")
        for setup in brachy.setups:
            times = ", ".join(f"{c.number}: {c.total_time:g} s" for c in setup.channels)
            print(f"  application setup {setup.number} {setup.name!r} ({setup.setup_type}): "
                  f"{len(setup.channels)} channels ({times})")
    return 0


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="configuration file, for the UID root and the output character "
                             "set (default $RTFORGE_CONFIG)")


def _config(args: argparse.Namespace) -> ExportConfig:
    return load_config(args.config).export


def _split(args: argparse.Namespace) -> int:
    ds = _read(args.rtplan)
    groups = len(ds.get("FractionGroupSequence", []))
    if groups <= 1:
        # Nothing to split: a copy under the same SOP Instance UID would be a second object
        # claiming to be the first.
        if args.json:
            emit_json({"plans": [], "fraction_groups": groups})
        else:
            print(f"{args.rtplan}: {groups} fraction group; nothing to split, nothing written")
        return 0
    parts = split_rtplan(ds, config=_config(args))
    paths = [write_rtplan(part, args.output, flat=True) for part in parts]
    if args.json:
        emit_json({"plans": [str(p) for p in paths], "fraction_groups": groups})
    else:
        for part, path in zip(parts, paths, strict=True):
            print(f"{path}: {part.RTPlanLabel}")
    return 0


def _deid(args: argparse.Namespace) -> int:
    trial = load_trial(args.trial)
    found = read_folder(args.input)
    key = read_key(args.key_file) if args.key_file else new_key()
    originals = [ds for _, ds in found]
    config = _config(args)
    result = deidentify(originals, trial, key=key, uid_root=config.uid_root,
                        character_set=config.character_set,
                        keep_descriptors=args.keep_descriptors, date_shift_days=args.shift_dates)
    beside: dict[Path, bytes] = {}
    if args.map_out:
        ids = sorted({str(ds.get("PatientID", "") or "") for ds in originals} - {""})
        beside[args.map_out] = uid_map_csv(result.uid_map,
                                           [(i, trial.subject_id) for i in ids]).encode()
    paths = write_objects(result.datasets, args.output, beside=beside)
    report = check_references(result.datasets)
    outside = sorted({r.uid for r in report.dangling})
    listing = args.list_outside or args.verbose > 0
    if args.json:
        emit_json({"written": [str(p) for p in paths], "uids_replaced": len(result.uid_map),
                   "dangling": [r.__dict__ for r in report.dangling]})
        return 0
    print(f"{len(paths)} objects de-identified into {args.output}, "
          f"{len(result.uid_map)} UIDs replaced")
    if outside:
        print(f"  note: {len(report.dangling)} references to {len(outside)} UIDs outside the "
              "set (kept, their UIDs replaced like the rest)"
              + ("" if listing else "; --verbose lists them"))
    if listing:
        for ref in report.dangling:
            print(f"  {ref.source} references {ref.kind.value} {ref.uid} ({ref.path}), "
                  "not in the set")
    return 0


def _relink(args: argparse.Namespace) -> int:
    change = PatientChange(args.patient_id, patient_name=args.patient_name, sex=args.sex,
                           birth_date=args.birth_date)
    found = read_folder(args.input)
    result = relink([ds for _, ds in found], change, config=_config(args),
                    keep_study_uids=args.keep_study_uids)
    paths = write_objects(result.datasets, args.output)
    old_ids = {uid: sorted({str(ds.get("PatientID", "") or "") for _, ds in found
                            if str(ds.get("StudyInstanceUID", "")) == uid} - {change.patient_id})
               for uid in result.shared_studies}
    warnings = [f"--keep-study-uids: study {uid} now exists under two patients "
                f"({', '.join(ids) or '(no ID)'} and {change.patient_id}); a PACS shows, and a "
                "study-level C-MOVE returns, both" for uid, ids in old_ids.items()]
    for warning in warnings:
        sys.stderr.write(f"rtforge relink: warning: {warning}\n")
    if args.json:
        emit_json({"written": [str(p) for p in paths], "uid_map": result.uid_map,
                   "series_map": result.series_map, "study_map": result.study_map,
                   "warnings": warnings, "relinked": len(result.relinked),
                   "rt_dose_not_relinked": [{"sop_instance_uid": d.sop_instance_uid,
                                             "dangling": [r.__dict__ for r in d.dangling]}
                                            for d in result.untouched_doses]})
    else:
        print(f"{len(paths)} objects written to {args.output}: {len(result.uid_map)} with new "
              f"SOP Instance UIDs ({len(result.study_map)} new studies, "
              f"{len(result.series_map)} new series), {len(result.relinked)} references "
              "re-linked")
        for dose in result.untouched_doses:
            print(f"  RT Dose {dose.sop_instance_uid} not re-linked (copied unchanged); "
                  f"{len(dose.dangling)} of its references no longer resolve")
    return 0
