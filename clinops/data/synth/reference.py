"""Vocabularies of the synthetic MIMIC-IV v2.2: item ids, labels, units, ICD codes, value strings.

Everything here is a fact about MIMIC-IV v2.2 as documented in
``/work/shared/reference/MIMIC_IV_REFERENCE.md`` (mimic-code DDL and concepts, the MIMIC-IV
docs) or, where marked ``[verify]``, a plausible value taken from public code that the
reference does not pin down. Only data lives here; the generator reads it.
"""
from __future__ import annotations

from typing import NamedTuple

# The four v2.2 anchor year groups (space-hyphen-space), in time order; index = "year group".
ANCHOR_YEAR_GROUPS: tuple[str, ...] = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
FIRST_GROUP_YEAR = 2008
ICD10_START = (2015, 10, 1)  # real-time date from which admissions are coded in ICD-10-CM


# ---------------------------------------------------------------------------------------------
# d_items (icu): chartevents, inputevents and procedureevents items
# ---------------------------------------------------------------------------------------------
class Item(NamedTuple):
    label: str
    abbreviation: str
    linksto: str
    category: str
    unitname: str | None
    param_type: str


CHART_ITEMS: dict[int, Item] = {
    220045: Item("Heart Rate", "HR", "chartevents", "Routine Vital Signs", "bpm", "Numeric"),
    220048: Item("Heart Rhythm", "Heart Rhythm", "chartevents", "Routine Vital Signs", None, "Text"),
    220050: Item("Arterial Blood Pressure systolic", "ABPs", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220051: Item("Arterial Blood Pressure diastolic", "ABPd", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220052: Item("Arterial Blood Pressure mean", "ABPm", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    225309: Item("ART BP Systolic", "ART BP Systolic", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    225310: Item("ART BP Diastolic", "ART BP Diastolic", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    225312: Item("ART BP Mean", "ART BP Mean", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220179: Item("Non Invasive Blood Pressure systolic", "NBPs", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220180: Item("Non Invasive Blood Pressure diastolic", "NBPd", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220181: Item("Non Invasive Blood Pressure mean", "NBPm", "chartevents", "Routine Vital Signs", "mmHg", "Numeric"),
    220210: Item("Respiratory Rate", "RR", "chartevents", "Respiratory", "insp/min", "Numeric"),
    224690: Item("Respiratory Rate (Total)", "Respiratory Rate (Total)", "chartevents", "Respiratory", "insp/min", "Numeric"),
    224688: Item("Respiratory Rate (Set)", "Respiratory Rate (Set)", "chartevents", "Respiratory", "insp/min", "Numeric"),
    220277: Item("O2 saturation pulseoxymetry", "SpO2", "chartevents", "Respiratory", "%", "Numeric"),
    223761: Item("Temperature Fahrenheit", "Temperature F", "chartevents", "Routine Vital Signs", "°F", "Numeric"),
    223762: Item("Temperature Celsius", "Temperature C", "chartevents", "Routine Vital Signs", "°C", "Numeric"),
    224642: Item("Temperature Site", "Temp Site", "chartevents", "Routine Vital Signs", None, "Text"),
    220739: Item("GCS - Eye Opening", "GCS - Eye Opening", "chartevents", "Neurological", None, "Text"),
    223900: Item("GCS - Verbal Response", "GCS - Verbal Response", "chartevents", "Neurological", None, "Text"),
    223901: Item("GCS - Motor Response", "GCS - Motor Response", "chartevents", "Neurological", None, "Text"),
    223849: Item("Ventilator Mode", "Ventilator Mode", "chartevents", "Respiratory", None, "Text"),
    229314: Item("Ventilator Mode (Hamilton)", "Ventilator Mode (Hamilton)", "chartevents", "Respiratory", None, "Text"),
    226732: Item("O2 Delivery Device(s)", "O2 Delivery Device(s)", "chartevents", "Respiratory", None, "Text"),
    223834: Item("O2 Flow", "O2 Flow", "chartevents", "Respiratory", "L/min", "Numeric"),
    223835: Item("Inspired O2 Fraction", "FiO2", "chartevents", "Respiratory", None, "Numeric"),
    220339: Item("PEEP set", "PEEP set", "chartevents", "Respiratory", "cmH2O", "Numeric"),
    225664: Item("Glucose finger stick (range 70-100)", "Glucose FS (range 70 -100)", "chartevents", "Routine Vital Signs", None, "Numeric"),  # [verify] category
    226512: Item("Admission Weight (Kg)", "Admit Wt", "chartevents", "General", "kg", "Numeric"),
    224650: Item("Ectopy Type 1", "Ectopy Type 1", "chartevents", "Routine Vital Signs", None, "Text"),  # [verify] category
    # Alarm limits: documented at each nursing assessment on every monitored patient.
    220046: Item("Heart rate Alarm - High", "HR Alarm - High", "chartevents", "Alarms", "bpm", "Numeric"),
    220047: Item("Heart Rate Alarm - Low", "HR Alarm - Low", "chartevents", "Alarms", "bpm", "Numeric"),
    223769: Item("O2 Saturation Pulseoxymetry Alarm - High", "SpO2 Alarm - High", "chartevents", "Alarms", "%", "Numeric"),
    223770: Item("O2 Saturation Pulseoxymetry Alarm - Low", "SpO2 Alarm - Low", "chartevents", "Alarms", "%", "Numeric"),
    224161: Item("Resp Alarm - High", "Resp Alarm - High", "chartevents", "Alarms", "insp/min", "Numeric"),
    224162: Item("Resp Alarm - Low", "Resp Alarm - Low", "chartevents", "Alarms", "insp/min", "Numeric"),
}


class InputItem(NamedTuple):
    label: str
    category: str
    amountuom: str
    rateuom: str | None
    ordercategoryname: str
    ordercategorydescription: str


# Vasoactive agents: exactly the mimic-code vasoactive_agent items (reference section 3c).
VASOACTIVE_ITEMS: tuple[int, ...] = (221906, 221289, 221662, 221653, 221749, 222315, 221986)

INPUT_ITEMS: dict[int, InputItem] = {
    221906: InputItem("Norepinephrine", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    221289: InputItem("Epinephrine", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    221662: InputItem("Dopamine", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    221653: InputItem("Dobutamine", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    221749: InputItem("Phenylephrine", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    222315: InputItem("Vasopressin", "Medications", "units", "units/hour", "01-Drips", "Continuous Med"),
    221986: InputItem("Milrinone", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    225158: InputItem("NaCl 0.9%", "Fluids/Intake", "ml", "mL/hour", "02-Fluids (Crystalloids)", "Continuous IV"),
    225828: InputItem("LR", "Fluids/Intake", "ml", "mL/hour", "03-IV Fluid Bolus", "Bolus"),
    220949: InputItem("Dextrose 5%", "Fluids/Intake", "ml", "mL/hour", "02-Fluids (Crystalloids)", "Continuous IV"),
    222168: InputItem("Propofol", "Medications", "mg", "mcg/kg/min", "01-Drips", "Continuous Med"),
    221744: InputItem("Fentanyl", "Medications", "mg", "mcg/hour", "01-Drips", "Continuous Med"),
    225152: InputItem("Heparin Sodium", "Medications", "units", "units/hour", "01-Drips", "Continuous Med"),
    221794: InputItem("Furosemide (Lasix)", "Medications", "mg", None, "05-Med Bolus", "Drug Push"),
    225166: InputItem("Potassium Chloride", "Medications", "mEq", None, "05-Med Bolus", "Drug Push"),
    225798: InputItem("Vancomycin", "Antibiotics", "dose", None, "08-Antibiotics (IV)", "Drug Push"),
}

PROCEDURE_ITEMS: dict[int, Item] = {
    225792: Item("Invasive Ventilation", "Invasive Ventilation", "procedureevents", "2-Ventilation", None, "Process"),
    225794: Item("Non-invasive Ventilation", "Non-invasive Ventilation", "procedureevents", "2-Ventilation", None, "Process"),
    224385: Item("Intubation", "Intubation", "procedureevents", "1-Intubation/Extubation", None, "Event"),
    227194: Item("Extubation", "Extubation", "procedureevents", "1-Intubation/Extubation", None, "Event"),
    225752: Item("Arterial Line", "Arterial Line", "procedureevents", "Access Lines - Invasive", None, "Process"),  # [verify] category
    229351: Item("Foley Catheter", "Foley Catheter", "procedureevents", "4-Procedures", None, "Process"),  # [verify] category
    225459: Item("Chest X-Ray", "Chest X-Ray", "procedureevents", "5-Imaging", None, "Event"),  # [verify] category
}


# ---------------------------------------------------------------------------------------------
# d_labitems (hosp)
# ---------------------------------------------------------------------------------------------
class LabItem(NamedTuple):
    label: str
    fluid: str
    category: str
    uom: str | None
    ref_lower: float | None
    ref_upper: float | None
    decimals: int  # printed precision of value / valuenum


LAB_ITEMS: dict[int, LabItem] = {
    50912: LabItem("Creatinine", "Blood", "Chemistry", "mg/dL", 0.5, 1.2, 1),
    51006: LabItem("Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 6, 20, 0),
    50983: LabItem("Sodium", "Blood", "Chemistry", "mEq/L", 133, 145, 0),
    50971: LabItem("Potassium", "Blood", "Chemistry", "mEq/L", 3.3, 5.1, 1),
    50902: LabItem("Chloride", "Blood", "Chemistry", "mEq/L", 96, 108, 0),
    50882: LabItem("Bicarbonate", "Blood", "Chemistry", "mEq/L", 22, 32, 0),
    50931: LabItem("Glucose", "Blood", "Chemistry", "mg/dL", 70, 100, 0),
    50868: LabItem("Anion Gap", "Blood", "Chemistry", "mEq/L", 8, 20, 0),
    50862: LabItem("Albumin", "Blood", "Chemistry", "g/dL", 3.5, 5.2, 1),
    50885: LabItem("Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0, 1.5, 1),
    50861: LabItem("Alanine Aminotransferase (ALT)", "Blood", "Chemistry", "IU/L", 0, 40, 0),
    50878: LabItem("Asparate Aminotransferase (AST)", "Blood", "Chemistry", "IU/L", 0, 40, 0),
    50863: LabItem("Alkaline Phosphatase", "Blood", "Chemistry", "IU/L", 35, 105, 0),
    51301: LabItem("White Blood Cells", "Blood", "Hematology", "K/uL", 4.0, 11.0, 1),
    51222: LabItem("Hemoglobin", "Blood", "Hematology", "g/dL", 13.7, 17.5, 1),
    51221: LabItem("Hematocrit", "Blood", "Hematology", "%", 40, 51, 1),
    51265: LabItem("Platelet Count", "Blood", "Hematology", "K/uL", 150, 440, 0),
    51274: LabItem("PT", "Blood", "Hematology", "sec", 9.4, 12.5, 1),
    51237: LabItem("INR(PT)", "Blood", "Hematology", None, 0.9, 1.1, 1),
    51275: LabItem("PTT", "Blood", "Hematology", "sec", 25, 36.5, 1),
    52033: LabItem("Specimen Type", "Blood", "Blood Gas", None, None, None, 0),
    50820: LabItem("pH", "Blood", "Blood Gas", "units", 7.35, 7.45, 2),
    50821: LabItem("pO2", "Blood", "Blood Gas", "mm Hg", 85, 105, 0),
    50818: LabItem("pCO2", "Blood", "Blood Gas", "mm Hg", 35, 45, 0),
    50802: LabItem("Base Excess", "Blood", "Blood Gas", "mEq/L", -2, 3, 0),
    50804: LabItem("Calculated Total CO2", "Blood", "Blood Gas", "mEq/L", 21, 30, 0),
    50813: LabItem("Lactate", "Blood", "Blood Gas", "mmol/L", 0.5, 2.0, 1),
}

# Lab panels: the items drawn together in one specimen.
PANEL_CHEM = (51006, 50912, 50983, 50971, 50902, 50882, 50931, 50868)
PANEL_CBC = (51301, 51222, 51221, 51265)
PANEL_COAG = (51274, 51237, 51275)
PANEL_LFT = (50861, 50878, 50863, 50885)
PANEL_BG = (52033, 50820, 50821, 50818, 50802, 50804, 50813)


# ---------------------------------------------------------------------------------------------
# chartevents text values
# ---------------------------------------------------------------------------------------------
GCS_EYE = {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"}
GCS_VERBAL = {5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds",
              1: "No Response"}
GCS_VERBAL_ETT = "No Response-ETT"  # intubated; valuenum 1 in chartevents
GCS_MOTOR = {6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws", 3: "Abnormal Flexion",
             2: "Abnormal extension", 1: "No response"}

# Invasive modes (all in mimic-code's InvasiveVent lists); the first is the most common.
VENT_MODES = ("CMV/ASSIST/AutoFlow", "CMV/ASSIST", "CPAP/PSV", "SIMV/PSV/AutoFlow", "PRVC/AC",
              "CPAP/PSV+ApnPres", "APRV", "PCV+Assist")
VENT_MODES_HAMILTON = ("APV (cmv)", "ASV", "SIMV", "P-CMV", "VS", "APV (simv)")
DEVICE_ETT = "Endotracheal tube"
# Non-invasive O2 devices with the exact mimic-code strings (trailing spaces are real).
O2_DEVICES = ("Nasal cannula", "None", "Face tent", "High flow nasal cannula", "Non-rebreather",
              "Bipap mask ", "Aerosol-cool", "Venti mask ", "CPAP mask ")
ECTOPY_TYPES = ("None", "PVC's", "PAC's")  # [verify] value strings
HEART_RHYTHMS = ("SR (Sinus Rhythm)", "ST (Sinus Tachycardia)", "SB (Sinus Bradycardia)",
                 "AF (Atrial Fibrillation)", "A Paced", "V Paced")
TEMP_SITES = ("Oral", "Axillary", "Blood", "Rectal", "Temporal")
SPECIMEN_TYPES = ("ART.", "VEN.", "MIX.")


# ---------------------------------------------------------------------------------------------
# hosp: admissions, services, transfers vocabularies
# ---------------------------------------------------------------------------------------------
ADMISSION_TYPES = ("AMBULATORY OBSERVATION", "DIRECT EMER.", "DIRECT OBSERVATION", "ELECTIVE",
                   "EU OBSERVATION", "EW EMER.", "OBSERVATION ADMIT",
                   "SURGICAL SAME DAY ADMISSION", "URGENT")
PLANNED_ADMISSION_TYPES = ("ELECTIVE", "SURGICAL SAME DAY ADMISSION")
ADMISSION_LOCATIONS = ("EMERGENCY ROOM", "PHYSICIAN REFERRAL", "TRANSFER FROM HOSPITAL",
                       "WALK-IN/SELF REFERRAL", "CLINIC REFERRAL", "PROCEDURE SITE", "PACU",
                       "TRANSFER FROM SKILLED NURSING FACILITY",
                       "INTERNAL TRANSFER TO OR FROM PSYCH", "INFORMATION NOT AVAILABLE",
                       "AMBULATORY SURGERY TRANSFER")
DISCHARGE_LOCATIONS = ("HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB",
                       "CHRONIC/LONG TERM ACUTE CARE", "ACUTE HOSPITAL", "HOSPICE",
                       "PSYCH FACILITY", "OTHER FACILITY", "ASSISTED LIVING",
                       "HEALTHCARE FACILITY", "AGAINST ADVICE", "DIED")
# Discharges that cannot be index admissions of the readmission task (clinops/docs/architecture.md).
READMISSION_EXCLUDED_LOCATIONS = ("HOSPICE", "AGAINST ADVICE", "ACUTE HOSPITAL", "DIED")
INSURANCES = ("Medicare", "Medicaid", "Other")
LANGUAGES = ("ENGLISH", "?")
MARITAL_STATUSES = ("MARRIED", "SINGLE", "WIDOWED", "DIVORCED")
RACES = ("WHITE", "BLACK/AFRICAN AMERICAN", "OTHER", "UNKNOWN", "HISPANIC/LATINO - PUERTO RICAN",
         "WHITE - OTHER EUROPEAN", "ASIAN", "ASIAN - CHINESE", "HISPANIC OR LATINO",
         "WHITE - RUSSIAN", "BLACK/CAPE VERDEAN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER")
RACE_WEIGHTS = (0.62, 0.11, 0.05, 0.04, 0.02, 0.03, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.01)

ICU_UNITS = {
    "MICU": "Medical Intensive Care Unit (MICU)",
    "SICU": "Surgical Intensive Care Unit (SICU)",
    "CVICU": "Cardiac Vascular Intensive Care Unit (CVICU)",
    "CCU": "Coronary Care Unit (CCU)",
    "MSICU": "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "TSICU": "Trauma SICU (TSICU)",
    "NSICU": "Neuro Surgical Intensive Care Unit (Neuro SICU)",
}
WARD_UNITS = ("Medicine", "Medicine/Cardiology", "Med/Surg", "Hematology/Oncology", "Surgery",
              "Surgery/Trauma", "Cardiac Surgery", "Vascular", "Neurology", "Orthopaedics",
              "Transplant", "Med/Surg/Trauma")
ED_UNIT = "Emergency Department"
PACU_UNIT = "PACU"
DISCHARGE_LOUNGE = "Discharge Lounge"
SERVICE_WARD_UNIT = {"MED": "Medicine", "CMED": "Medicine/Cardiology", "OMED": "Hematology/Oncology",
                     "NMED": "Neurology", "SURG": "Surgery", "TRAUM": "Surgery/Trauma",
                     "CSURG": "Cardiac Surgery", "VSURG": "Vascular", "NSURG": "Neurology",
                     "ORTHO": "Orthopaedics", "GU": "Med/Surg", "GYN": "Med/Surg",
                     "TSURG": "Med/Surg", "PSURG": "Med/Surg", "ENT": "Med/Surg"}


# ---------------------------------------------------------------------------------------------
# ICD-9-CM / ICD-10-CM diagnoses: (icd9, title9, icd10, title10). Codes without dots.
# ---------------------------------------------------------------------------------------------
class Dx(NamedTuple):
    icd9: str
    title9: str
    icd10: str
    title10: str


DIAGNOSES: dict[str, Dx] = {
    # principal diagnoses
    "sepsis": Dx("0389", "Unspecified septicemia", "A419", "Sepsis, unspecified organism"),
    "pneumonia": Dx("486", "Pneumonia, organism unspecified", "J189", "Pneumonia, unspecified organism"),
    "resp_failure": Dx("51881", "Acute respiratory failure", "J9601", "Acute respiratory failure with hypoxia"),
    "copd": Dx("49121", "Obstructive chronic bronchitis with (acute) exacerbation", "J441",
               "Chronic obstructive pulmonary disease with (acute) exacerbation"),
    "chf": Dx("42823", "Acute on chronic systolic heart failure", "I5023",
              "Acute on chronic systolic (congestive) heart failure"),
    "ami": Dx("41071", "Subendocardial infarction, initial episode of care", "I214",
              "Non-ST elevation (NSTEMI) myocardial infarction"),
    "cad": Dx("41401", "Coronary atherosclerosis of native coronary artery", "I2510",
              "Atherosclerotic heart disease of native coronary artery without angina pectoris"),
    "aortic_valve": Dx("4241", "Aortic valve disorders", "I350", "Nonrheumatic aortic (valve) stenosis"),
    "ich": Dx("431", "Intracerebral hemorrhage", "I619", "Nontraumatic intracerebral hemorrhage, unspecified"),
    "stroke": Dx("43491", "Cerebral artery occlusion, unspecified with cerebral infarction", "I639",
                 "Cerebral infarction, unspecified"),
    "sdh": Dx("85220", "Subdural hemorrhage following injury without mention of open intracranial "
                       "wound, unspecified state of consciousness", "S065X0A",
              "Traumatic subdural hemorrhage without loss of consciousness, initial encounter"),
    "hip_fracture": Dx("82021", "Closed fracture of intertrochanteric section of neck of femur",
                       "S72141A", "Displaced intertrochanteric fracture of right femur, initial "
                                  "encounter for closed fracture"),
    "gi_bleed": Dx("5789", "Hemorrhage of gastrointestinal tract, unspecified", "K922",
                   "Gastrointestinal hemorrhage, unspecified"),
    "alcoholic_cirrhosis": Dx("5712", "Alcoholic cirrhosis of liver", "K7030",
                              "Alcoholic cirrhosis of liver without ascites"),
    "aki": Dx("5849", "Acute kidney failure, unspecified", "N179", "Acute kidney failure, unspecified"),
    "dka": Dx("25013", "Diabetes with ketoacidosis, type I [juvenile type], uncontrolled", "E1010",
              "Type 1 diabetes mellitus with ketoacidosis without coma"),
    "overdose": Dx("9694", "Poisoning by benzodiazepine-based tranquilizers", "T424X1A",
                   "Poisoning by benzodiazepines, accidental (unintentional), initial encounter"),
    "etoh_withdrawal": Dx("29181", "Alcohol withdrawal", "F10239",
                          "Alcohol dependence with withdrawal, unspecified"),
    "lung_cancer": Dx("1629", "Malignant neoplasm of bronchus and lung, unspecified", "C3490",
                      "Malignant neoplasm of unspecified part of unspecified bronchus or lung"),
    # principal diagnosis of a planned chemotherapy admission (CMS always-planned, PR2)
    "chemo_maintenance": Dx("V5811", "Encounter for antineoplastic chemotherapy", "Z5111",
                            "Encounter for antineoplastic chemotherapy"),
    "pancreatitis": Dx("5770", "Acute pancreatitis", "K8590",
                       "Acute pancreatitis without necrosis or infection, unspecified"),
    "aaa": Dx("4414", "Abdominal aneurysm without mention of rupture", "I714",
              "Abdominal aortic aneurysm, without rupture"),
    "bowel_obstruction": Dx("5609", "Unspecified intestinal obstruction", "K5660",
                            "Unspecified intestinal obstruction"),
    "afib": Dx("42731", "Atrial fibrillation", "I4891", "Unspecified atrial fibrillation"),
    "cardiac_arrest": Dx("4275", "Cardiac arrest", "I469", "Cardiac arrest, cause unspecified"),
    "chest_pain": Dx("78650", "Chest pain, unspecified", "R079", "Chest pain, unspecified"),
    "cellulitis": Dx("6826", "Cellulitis and abscess of leg, except foot", "L03115",
                     "Cellulitis of right lower limb"),
    "uti": Dx("5990", "Urinary tract infection, site not specified", "N390",
              "Urinary tract infection, site not specified"),
    "syncope": Dx("7802", "Syncope and collapse", "R55", "Syncope and collapse"),
    "hyponatremia": Dx("2761", "Hyposmolality and/or hyponatremia", "E871",
                       "Hypo-osmolality and hyponatremia"),
    "abdominal_pain": Dx("78900", "Abdominal pain, unspecified site", "R109",
                         "Unspecified abdominal pain"),
    "knee_oa": Dx("71536", "Osteoarthrosis, localized, not specified whether primary or secondary, "
                           "lower leg", "M1711", "Unilateral primary osteoarthritis, right knee"),
    "appendicitis": Dx("5409", "Acute appendicitis without mention of peritonitis", "K3580",
                       "Unspecified acute appendicitis"),
    "cholecystitis": Dx("57400", "Calculus of gallbladder with acute cholecystitis, without mention "
                                 "of obstruction", "K8000",
                        "Calculus of gallbladder with acute cholecystitis without obstruction"),
    "depression_psych": Dx("29620", "Major depressive affective disorder, single episode, "
                                    "unspecified", "F329",
                           "Major depressive disorder, single episode, unspecified"),
    # secondary diagnoses: Charlson components (reference section 5) and common comorbidities
    "c_chf": Dx("4280", "Congestive heart failure, unspecified", "I509", "Heart failure, unspecified"),
    "c_mi_old": Dx("412", "Old myocardial infarction", "I252", "Old myocardial infarction"),
    "c_pvd": Dx("4439", "Peripheral vascular disease, unspecified", "I739",
                "Peripheral vascular disease, unspecified"),
    "c_cvd": Dx("43820", "Late effects of cerebrovascular disease, hemiplegia affecting unspecified "
                         "side", "I69359", "Hemiplegia and hemiparesis following cerebral infarction "
                                          "affecting unspecified side"),
    "c_dementia": Dx("29410", "Dementia in conditions classified elsewhere without behavioral "
                              "disturbance", "F0390",
                     "Unspecified dementia without behavioral disturbance"),
    "c_copd": Dx("496", "Chronic airway obstruction, not elsewhere classified", "J449",
                 "Chronic obstructive pulmonary disease, unspecified"),
    "c_rheum": Dx("7140", "Rheumatoid arthritis", "M069", "Rheumatoid arthritis, unspecified"),
    "c_liver_mild": Dx("5715", "Cirrhosis of liver without mention of alcohol", "K7469",
                       "Other cirrhosis of liver"),
    "c_liver_severe": Dx("5723", "Portal hypertension", "K766", "Portal hypertension"),
    "c_diabetes": Dx("25000", "Diabetes mellitus without mention of complication, type II or "
                              "unspecified type, not stated as uncontrolled", "E119",
                     "Type 2 diabetes mellitus without complications"),
    "c_diabetes_cc": Dx("25040", "Diabetes with renal manifestations, type II or unspecified type, "
                                 "not stated as uncontrolled", "E1122",
                        "Type 2 diabetes mellitus with diabetic chronic kidney disease"),
    "c_renal": Dx("5859", "Chronic kidney disease, unspecified", "N189",
                  "Chronic kidney disease, unspecified"),
    "c_dialysis": Dx("V4511", "Renal dialysis status", "Z992", "Dependence on renal dialysis"),
    "c_malignancy": Dx("1749", "Malignant neoplasm of breast (female), unspecified", "C50919",
                       "Malignant neoplasm of unspecified site of unspecified female breast"),
    "c_metastatic": Dx("1977", "Malignant neoplasm of liver, secondary", "C787",
                       "Secondary malignant neoplasm of liver and intrahepatic bile duct"),
    "c_hiv": Dx("042", "Human immunodeficiency virus [HIV] disease", "B20",
                "Human immunodeficiency virus [HIV] disease"),
    "htn": Dx("4019", "Unspecified essential hypertension", "I10", "Essential (primary) hypertension"),
    "hld": Dx("2724", "Other and unspecified hyperlipidemia", "E785", "Hyperlipidemia, unspecified"),
    "afib_chronic": Dx("42731", "Atrial fibrillation", "I4891", "Unspecified atrial fibrillation"),
    "obesity": Dx("27800", "Obesity, unspecified", "E669", "Obesity, unspecified"),
    "tobacco": Dx("3051", "Tobacco use disorder", "F17210",
                  "Nicotine dependence, cigarettes, uncomplicated"),
    "depression": Dx("311", "Depressive disorder, not elsewhere classified", "F329",
                     "Major depressive disorder, single episode, unspecified"),
    "anemia": Dx("2859", "Anemia, unspecified", "D649", "Anemia, unspecified"),
    "hypothyroid": Dx("2449", "Unspecified acquired hypothyroidism", "E039", "Hypothyroidism, unspecified"),
    "gerd": Dx("53081", "Esophageal reflux", "K219",
               "Gastro-esophageal reflux disease without esophagitis"),
    "anticoag": Dx("V5861", "Long-term (current) use of anticoagulants", "Z7901",
                   "Long term (current) use of anticoagulants"),
    # acute secondary diagnoses coded from the ICU course
    "septic_shock": Dx("78552", "Septic shock", "R6521", "Severe sepsis with septic shock"),
    "severe_sepsis": Dx("99592", "Severe sepsis", "R6520", "Severe sepsis without septic shock"),
    "a_resp_failure": Dx("51881", "Acute respiratory failure", "J9601",
                         "Acute respiratory failure with hypoxia"),
    "a_aki": Dx("5849", "Acute kidney failure, unspecified", "N179", "Acute kidney failure, unspecified"),
    "acidosis": Dx("2762", "Acidosis", "E872", "Acidosis"),
    "hyperkalemia": Dx("2767", "Hyperpotassemia", "E875", "Hyperkalemia"),
    "thrombocytopenia": Dx("2875", "Thrombocytopenia, unspecified", "D696", "Thrombocytopenia, unspecified"),
    "coma": Dx("78001", "Coma", "R4020", "Unspecified coma"),
}

# Chronic comorbidities carried by a patient (flag name -> DIAGNOSES key). Charlson components first.
COMORBIDITIES: tuple[str, ...] = (
    "c_chf", "c_mi_old", "c_pvd", "c_cvd", "c_dementia", "c_copd", "c_rheum", "c_liver_mild",
    "c_liver_severe", "c_diabetes", "c_diabetes_cc", "c_renal", "c_dialysis", "c_malignancy",
    "c_metastatic", "c_hiv", "htn", "hld", "afib_chronic", "obesity", "tobacco", "depression",
    "anemia", "hypothyroid", "gerd", "anticoag",
)
# Charlson weight of each comorbidity flag (0 = not a Charlson component).
CHARLSON_WEIGHT = {"c_chf": 1, "c_mi_old": 1, "c_pvd": 1, "c_cvd": 1, "c_dementia": 1, "c_copd": 1,
                   "c_rheum": 1, "c_liver_mild": 1, "c_liver_severe": 3, "c_diabetes": 1,
                   "c_diabetes_cc": 2, "c_renal": 2, "c_dialysis": 2, "c_malignancy": 2,
                   "c_metastatic": 6, "c_hiv": 6}


# ---------------------------------------------------------------------------------------------
# ICD-9-CM / ICD-10-PCS procedures: (icd9, title9, icd10, title10)
# ---------------------------------------------------------------------------------------------
PROCEDURES: dict[str, Dx] = {
    "intubation": Dx("9604", "Insertion of endotracheal tube", "0BH17EZ",
                     "Insertion of Endotracheal Airway into Trachea, Via Natural or Artificial Opening"),
    "vent_short": Dx("9671", "Continuous invasive mechanical ventilation for less than 96 "
                             "consecutive hours", "5A1945Z",
                     "Respiratory Ventilation, 24-96 Consecutive Hours"),
    "vent_long": Dx("9672", "Continuous invasive mechanical ventilation for 96 consecutive hours "
                            "or more", "5A1955Z",
                    "Respiratory Ventilation, Greater than 96 Consecutive Hours"),
    "central_line": Dx("3893", "Venous catheterization, not elsewhere classified", "02HV33Z",
                       "Insertion of Infusion Device into Superior Vena Cava, Percutaneous Approach"),
    "cabg": Dx("3612", "(Aorto)coronary bypass of two coronary arteries", "021109W",
               "Bypass Coronary Artery, Two Arteries from Aorta with Autologous Venous Tissue, "
               "Open Approach"),
    "bypass_pump": Dx("3961", "Extracorporeal circulation auxiliary to open heart surgery", "5A1221Z",
                      "Performance of Cardiac Output, Continuous"),
    "avr": Dx("3522", "Other replacement of aortic valve", "02RF0JZ",
              "Replacement of Aortic Valve with Synthetic Substitute, Open Approach"),
    "hip_orif": Dx("7935", "Open reduction of fracture with internal fixation, femur", "0QS604Z",
                   "Reposition Right Upper Femur with Internal Fixation Device, Open Approach"),
    "knee_replacement": Dx("8154", "Total knee replacement", "0SRC0JZ",
                           "Replacement of Right Knee Joint with Synthetic Substitute, Open Approach"),
    "lap_chole": Dx("5123", "Laparoscopic cholecystectomy", "0FT44ZZ",
                    "Resection of Gallbladder, Percutaneous Endoscopic Approach"),
    "lap_appy": Dx("4701", "Laparoscopic appendectomy", "0DTJ4ZZ",
                   "Resection of Appendix, Percutaneous Endoscopic Approach"),
    "egd": Dx("4513", "Other endoscopy of small intestine", "0DJ08ZZ",
              "Inspection of Upper Intestinal Tract, Via Natural or Artificial Opening Endoscopic"),
    "hemodialysis": Dx("3995", "Hemodialysis", "5A1D70Z",
                       "Performance of Urinary Filtration, Intermittent, Less than 6 Hours Per Day"),
    "aaa_repair": Dx("3844", "Resection of vessel with replacement, aorta, abdominal", "04R00JZ",
                     "Replacement of Abdominal Aorta with Synthetic Substitute, Open Approach"),
    "hemicolectomy": Dx("4573", "Open and other right hemicolectomy", "0DTF0ZZ",
                        "Resection of Right Large Intestine, Open Approach"),
    "craniotomy": Dx("0124", "Other craniotomy", "00C40ZZ",
                     "Extirpation of Matter from Subdural Space, Open Approach"),
    # CMS potentially planned (PR3, CCS 45): planned when the principal diagnosis is not acute
    "ptca": Dx("3606", "Insertion of non-drug-eluting coronary artery stent(s)", "02703DZ",
               "Dilation of Coronary Artery, One Artery with Intraluminal Device, Percutaneous Approach"),
    "transfusion": Dx("9904", "Transfusion of packed cells", "30233N1",
                      "Transfusion of Nonautologous Red Blood Cells into Peripheral Vein, "
                      "Percutaneous Approach"),
}


# ---------------------------------------------------------------------------------------------
# Diagnosis groups: what brings a patient in, and how it shapes the latent physiology.
# ---------------------------------------------------------------------------------------------
class IcuGroup(NamedTuple):
    dx: str                 # DIAGNOSES key of the principal diagnosis
    weight: float           # share of ICU admissions
    services: tuple[tuple[str, float], ...]
    unit: str               # ICU_UNITS key
    surgical: bool          # arrives from the OR (post-operative)
    # shifts of the latent organ states (standard-normal scale; + = worse)
    circ: float = 0.0
    resp: float = 0.0
    neuro: float = 0.0
    renal: float = 0.0
    liver: float = 0.0
    coag: float = 0.0
    infl: float = 0.0
    death: float = 0.0      # log-odds shift of death not explained by the organ states
    procedure: str | None = None  # PROCEDURES key done in this admission


ICU_GROUPS: dict[str, IcuGroup] = {
    "sepsis": IcuGroup("sepsis", 0.13, (("MED", 1.0),), "MICU", False, circ=0.8, renal=0.4, coag=0.4, infl=1.3, death=0.2),
    "pneumonia": IcuGroup("pneumonia", 0.07, (("MED", 1.0),), "MICU", False, resp=0.9, infl=0.8),
    "resp_failure": IcuGroup("resp_failure", 0.06, (("MED", 1.0),), "MICU", False, resp=1.4, neuro=0.2),
    "copd": IcuGroup("copd", 0.03, (("MED", 1.0),), "MICU", False, resp=0.9),
    "chf": IcuGroup("chf", 0.06, (("CMED", 0.8), ("MED", 0.2)), "CCU", False, circ=0.5, resp=0.5, renal=0.3),
    "ami": IcuGroup("ami", 0.06, (("CMED", 1.0),), "CCU", False, circ=0.5),
    "cad": IcuGroup("cad", 0.08, (("CSURG", 1.0),), "CVICU", True, circ=0.2, resp=0.3, death=-1.2, procedure="cabg"),
    "aortic_valve": IcuGroup("aortic_valve", 0.04, (("CSURG", 1.0),), "CVICU", True, circ=0.2, resp=0.3, death=-1.0, procedure="avr"),
    "ich": IcuGroup("ich", 0.05, (("NMED", 0.6), ("NSURG", 0.4)), "NSICU", False, neuro=1.6, death=0.2),
    "stroke": IcuGroup("stroke", 0.04, (("NMED", 1.0),), "NSICU", False, neuro=1.0),
    "sdh": IcuGroup("sdh", 0.04, (("NSURG", 0.6), ("TRAUM", 0.4)), "TSICU", True, neuro=1.2, procedure="craniotomy"),
    "hip_fracture": IcuGroup("hip_fracture", 0.02, (("ORTHO", 0.5), ("TRAUM", 0.5)), "TSICU", True, coag=0.2, death=-0.5, procedure="hip_orif"),
    "gi_bleed": IcuGroup("gi_bleed", 0.06, (("MED", 1.0),), "MICU", False, circ=0.6, coag=0.4, procedure="egd"),
    "alcoholic_cirrhosis": IcuGroup("alcoholic_cirrhosis", 0.03, (("MED", 1.0),), "MICU", False, liver=1.8, coag=1.0, renal=0.4, neuro=0.4),
    "aki": IcuGroup("aki", 0.03, (("MED", 1.0),), "MICU", False, renal=1.6, procedure="hemodialysis"),
    "dka": IcuGroup("dka", 0.03, (("MED", 1.0),), "MICU", False, renal=0.4, death=-1.2),
    "overdose": IcuGroup("overdose", 0.03, (("MED", 1.0),), "MICU", False, neuro=1.3, resp=0.5, death=-1.3),
    "etoh_withdrawal": IcuGroup("etoh_withdrawal", 0.02, (("MED", 1.0),), "MICU", False, neuro=0.5, death=-1.2),
    "lung_cancer": IcuGroup("lung_cancer", 0.02, (("OMED", 1.0),), "MICU", False, resp=0.6, death=0.6),
    "pancreatitis": IcuGroup("pancreatitis", 0.02, (("MED", 0.5), ("SURG", 0.5)), "SICU", False, infl=0.8, circ=0.3),
    "aaa": IcuGroup("aaa", 0.02, (("VSURG", 1.0),), "SICU", True, circ=0.3, death=-0.6, procedure="aaa_repair"),
    "bowel_obstruction": IcuGroup("bowel_obstruction", 0.03, (("SURG", 1.0),), "SICU", True, infl=0.3, procedure="hemicolectomy"),
    "afib": IcuGroup("afib", 0.02, (("CMED", 1.0),), "CCU", False, circ=0.2, death=-1.0),
    "cardiac_arrest": IcuGroup("cardiac_arrest", 0.02, (("CMED", 0.5), ("MED", 0.5)), "CCU", False, neuro=2.0, circ=1.2, death=0.6),
}


class WardGroup(NamedTuple):
    dx: str
    weight: float
    services: tuple[tuple[str, float], ...]
    elective: float          # probability that an admission for this reason is planned
    procedure: str | None = None


WARD_GROUPS: dict[str, WardGroup] = {
    "chest_pain": WardGroup("chest_pain", 0.08, (("MED", 0.55), ("CMED", 0.45)), 0.0),
    "cellulitis": WardGroup("cellulitis", 0.05, (("MED", 1.0),), 0.0),
    "uti": WardGroup("uti", 0.05, (("MED", 0.9), ("GU", 0.1)), 0.0),
    "pneumonia": WardGroup("pneumonia", 0.07, (("MED", 1.0),), 0.0),
    "chf": WardGroup("chf", 0.06, (("MED", 0.55), ("CMED", 0.45)), 0.0),
    "copd": WardGroup("copd", 0.04, (("MED", 1.0),), 0.0),
    "syncope": WardGroup("syncope", 0.04, (("MED", 0.8), ("CMED", 0.2)), 0.0),
    "etoh_withdrawal": WardGroup("etoh_withdrawal", 0.04, (("MED", 1.0),), 0.0),
    "gi_bleed": WardGroup("gi_bleed", 0.04, (("MED", 1.0),), 0.0, "egd"),
    "aki": WardGroup("aki", 0.03, (("MED", 1.0),), 0.0),
    "hyponatremia": WardGroup("hyponatremia", 0.03, (("MED", 1.0),), 0.0),
    "abdominal_pain": WardGroup("abdominal_pain", 0.05, (("MED", 0.6), ("SURG", 0.4)), 0.0),
    "sepsis": WardGroup("sepsis", 0.04, (("MED", 1.0),), 0.0),
    "afib": WardGroup("afib", 0.02, (("CMED", 0.6), ("MED", 0.4)), 0.0),
    "lung_cancer": WardGroup("lung_cancer", 0.03, (("OMED", 0.8), ("TSURG", 0.2)), 0.3),
    "alcoholic_cirrhosis": WardGroup("alcoholic_cirrhosis", 0.03, (("MED", 1.0),), 0.0),
    "dka": WardGroup("dka", 0.01, (("MED", 1.0),), 0.0),
    "stroke": WardGroup("stroke", 0.03, (("NMED", 1.0),), 0.0),
    "hip_fracture": WardGroup("hip_fracture", 0.03, (("ORTHO", 1.0),), 0.0, "hip_orif"),
    "knee_oa": WardGroup("knee_oa", 0.04, (("ORTHO", 1.0),), 0.95, "knee_replacement"),
    "appendicitis": WardGroup("appendicitis", 0.02, (("SURG", 1.0),), 0.0, "lap_appy"),
    "cholecystitis": WardGroup("cholecystitis", 0.03, (("SURG", 1.0),), 0.3, "lap_chole"),
    "bowel_obstruction": WardGroup("bowel_obstruction", 0.02, (("SURG", 1.0),), 0.2, "hemicolectomy"),
    "cad": WardGroup("cad", 0.02, (("CMED", 0.6), ("CSURG", 0.4)), 0.6, "ptca"),
    "depression_psych": WardGroup("depression_psych", 0.02, (("PSYCH", 1.0),), 0.0),
    "overdose": WardGroup("overdose", 0.01, (("MED", 1.0),), 0.0),
    "pancreatitis": WardGroup("pancreatitis", 0.02, (("MED", 1.0),), 0.0),
}
